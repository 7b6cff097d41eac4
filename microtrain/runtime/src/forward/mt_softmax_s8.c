/*
 * mt_softmax_s8: int8 SOFTMAX as TFLite Micro's reference kernel (gemmlowp fixed point),
 * bit-exact with microtrain/quant.py softmax_s8, which documents the arithmetic:
 * differences to the row maximum rescaled to Q5.26, exp in Q0.31, the sum in Q12.19
 * inverted by Newton-Raphson, output scale 1/256 and zero point -128.
 *
 * The fixed-point helpers below are gemmlowp's, on int32 values; additions that the C++
 * does in wrapping int32 arithmetic are done here in uint32 (defined wrap-around in C99).
 */
#include "mt_nn.h"

/* a + b and a - b wrapping at 32 bits, as gemmlowp's FixedPoint operators */
static int32_t wrap_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static int32_t wrap_sub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* SaturatingRoundingDoublingHighMul (mt_requantize with shift 0 is exactly that). */
static int32_t mul(int32_t a, int32_t b)
{
    return mt_requantize(a, b, 0);
}

/* RoundingDivideByPOT: round(x / 2^e), halves away from zero; e in [0, 31]. */
static int32_t div_pot(int32_t x, int32_t e)
{
    const int32_t mask = (int32_t)(((uint32_t)1 << e) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/* SaturatingRoundingMultiplyByPOT with exponent e > 0: a saturating left shift. */
static int32_t shl_sat(int32_t x, int32_t e)
{
    const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - e)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << e);
}

/* exp(a) for a in [-1/4, 0), Q0.31: Taylor series around -1/8. */
static int32_t exp_on_interval(int32_t a)
{
    const int32_t constant_term = 1895147668; /* exp(-1/8) */
    const int32_t one_third = 715827883;
    const int32_t x = wrap_add(a, (int32_t)1 << 28);
    const int32_t x2 = mul(x, x);
    const int32_t x3 = mul(x2, x);
    const int32_t x4 = mul(x2, x2);
    const int32_t x4_over_4 = div_pot(x4, 2);
    const int32_t poly = div_pot(wrap_add(mul(wrap_add(x4_over_4, x3), one_third), x2), 1);
    return wrap_add(constant_term, mul(constant_term, wrap_add(x, poly)));
}

/* exp(a) for a <= 0 in Q5.26, result Q0.31. */
static int32_t exp_on_negative_values(int32_t a)
{
    static const int32_t factor[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t one_quarter = (int32_t)1 << 24;
    const int32_t a_mod = wrap_sub(a & (one_quarter - 1), one_quarter);
    int32_t result = exp_on_interval(shl_sat(a_mod, 5));
    const int32_t remainder = wrap_sub(a_mod, a);
    int32_t k;
    for (k = 0; k < 7; ++k) { /* bit 24 + k of the remainder: exp(-2^(k-2)) */
        if (remainder & ((int32_t)1 << (24 + k))) {
            result = mul(result, factor[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out. */
static int32_t one_over_one_plus_x(int32_t a)
{
    /* RoundingHalfSum(a, 1.0): (a + b + sign) / 2 truncated toward zero, without a 64-bit division */
    const int64_t t = (int64_t)a + INT32_MAX + 1; /* a >= 0 here, so the sum and its sign are positive */
    const int32_t half_denominator = (int32_t)(t >> 1);
    int32_t x = wrap_add(1515870810, mul(half_denominator, -1010580540)); /* Q2.29 */
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus = wrap_sub((int32_t)1 << 29, mul(half_denominator, x));
        x = wrap_add(x, shl_sat(mul(x, one_minus), 2));
    }
    return shl_sat(x, 1);
}

mt_status mt_softmax_s8(const mt_softmax_params *p, const int8_t *input, int8_t *output)
{
    int32_t r, c;

    /* read params, check consistency */
    if (p == NULL || input == NULL || output == NULL) {
        return MT_ERR_NULL;
    }
    if (p->rows < 1 || p->size < 1 || p->size > 4096) { /* 4096 exps of at most 2^19 fit Q12.19 */
        return MT_ERR_SHAPE;
    }
    if (p->input_multiplier < 0 || p->input_left_shift < 0 || p->input_left_shift > 30 || p->diff_min > 0) {
        return MT_ERR_PARAM;
    }

    /* loops (a row whose sum of exponentials reaches 2^28 stops with MT_ERR_OVERFLOW, leaving
     * the rows before it written, as TFLM's TFLITE_CHECK on the exponent would abort) */
    for (r = 0; r < p->rows; ++r) {
        const int8_t *x = input + r * p->size;
        int8_t *y = output + r * p->size;
        int32_t max = -128, sum = 0, headroom = 0, bits_over_unit, inverse, exponent;
        uint32_t u;
        for (c = 0; c < p->size; ++c) {
            max = x[c] > max ? x[c] : max;
        }
        for (c = 0; c < p->size; ++c) {
            const int32_t diff = x[c] - max;
            if (diff >= p->diff_min) {
                sum = wrap_add(sum, div_pot(exp_on_negative_values(mt_requantize(diff, p->input_multiplier,
                                                                                 p->input_left_shift)), 12));
            }
        }
        /* GetReciprocal: normalise the sum (> 0: the maximum contributes 2^19) to [1, 2) */
        for (u = (uint32_t)sum; (u & 0x80000000u) == 0; u <<= 1) {
            ++headroom;
        }
        bits_over_unit = 12 - headroom;
        inverse = one_over_one_plus_x((int32_t)(u - 0x80000000u));
        exponent = bits_over_unit + 31 - 8;
        if (exponent > 31) { /* a sum of 2^28 or more (512+ near-equal inputs): TFLM's check fails too */
            return MT_ERR_OVERFLOW;
        }
        for (c = 0; c < p->size; ++c) {
            const int32_t diff = x[c] - max;
            if (diff >= p->diff_min) {
                const int32_t e = exp_on_negative_values(mt_requantize(diff, p->input_multiplier, p->input_left_shift));
                const int32_t v = div_pot(mul(inverse, e), exponent) - 128;
                y[c] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
            } else {
                y[c] = -128;
            }
        }
    }
    return MT_OK;
}
