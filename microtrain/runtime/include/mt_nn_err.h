/*
 * mt_nn_err.h: internal helpers of the integer-error kernels (--grad-dtype int8 / int16).
 *
 * An error tensor is held as integer codes with one power-of-two scale (mt_grad_codes): element i
 * is codes[i] * 2^exponent exactly. The rule (Python twin: microtrain/runtime/grad_quant.py):
 *   m = max |d|;  m = f * 2^k with f in [0.5, 1);  e = k - (bits - 1)
 *   q = clamp(rint(d * 2^-e), -(2^(bits-1) - 1), 2^(bits-1) - 1)   (rint: half to even)
 * A tensor with m == 0, m < 2^-100 or m not finite gets all codes 0 and e = 0.
 */
#ifndef MT_NN_ERR_H
#define MT_NN_ERR_H

#include "mt_nn.h"

/* 2^e as a float, for e in [-126, 127] (a normal number: built from its bits). */
static inline float mt_nn_pow2f(int32_t e)
{
    const uint32_t bits = (uint32_t)(e + 127) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The exponent e of the rule for the max |d| m; 0 (all codes zero) when m is 0, below 2^-100
 * or not finite. m >= 2^-100 is a normal float, so k is its biased exponent field - 126, and
 * e = k - (bits - 1) lies in [-114, 121] for bits 8 or 16: 2^-e and 2^e are normal floats. */
static inline int32_t mt_nn_err_exponent(float m, int32_t bits, int32_t *nonzero)
{
    uint32_t u;
    if (!(m >= 0x1p-100f) || !(m <= FLT_MAX)) {
        *nonzero = 0;
        return 0;
    }
    memcpy(&u, &m, sizeof u);
    *nonzero = 1;
    return (int32_t)((u >> 23) & 0xFFu) - 126 - (bits - 1);
}

/* rint (round half to even) of |v| <= 2^22 in float32: adding and removing 1.5 * 2^23 leaves
 * the nearest integer, ties to even (the build keeps float arithmetic in float32, no FMA). */
static inline int32_t mt_nn_rint_small(float v)
{
    const float t = v + 12582912.0f;
    return (int32_t)(t - 12582912.0f);
}

/* 1 when element i passes the clamp mask (bit i of mask; a NULL mask passes every element). */
static inline int32_t mt_nn_err_kept(const uint8_t *mask, int32_t i)
{
    return mask == NULL || ((mask[i >> 3] >> (i & 7)) & 1u);
}

/* The scale pass of mt_quantize_error_s8/_s16: the max |d| over the masked elements (any
 * non-finite one makes the whole tensor zero, as the twin's max would be NaN or infinite), its
 * exponent for codes of `bits` bits into *exponent, and 2^-e into *inv (0 when every code is 0). */
static inline void mt_nn_err_scale(const float *grad, const uint8_t *mask, int32_t n, int32_t bits,
                                   int32_t *exponent, float *inv)
{
    float m = 0.0f;
    int32_t i, nonzero = 0, finite = 1;

    for (i = 0; i < n; ++i) {
        float a;
        if (!mt_nn_err_kept(mask, i)) {
            continue;
        }
        a = grad[i] < 0.0f ? -grad[i] : grad[i];
        if (!(a <= FLT_MAX)) {
            finite = 0;
        } else if (a > m) {
            m = a;
        }
    }
    *exponent = finite ? mt_nn_err_exponent(m, bits, &nonzero) : 0;
    *inv = nonzero ? mt_nn_pow2f(-*exponent) : 0.0f;
}

/* The code of element i. */
static inline int32_t mt_nn_err_code(const mt_grad_codes *err, int32_t i)
{
    return err->bits == 8 ? (int32_t)((const int8_t *)err->codes)[i] : (int32_t)((const int16_t *)err->codes)[i];
}

/* MT_OK when err describes codes of 8 or 16 bits with an exponent of the rule. */
static inline mt_status mt_nn_check_error(const mt_grad_codes *err)
{
    if (err == NULL || err->codes == NULL) {
        return MT_ERR_NULL;
    }
    if ((err->bits != 8 && err->bits != 16) || err->exponent < -114 || err->exponent > 121) {
        return MT_ERR_PARAM;
    }
    return MT_OK;
}

#endif /* MT_NN_ERR_H */
