/*
 * mt_requantize: acc * M in fixed point, the one C definition of microtrain.quant.requantize
 * (TFLite / gemmlowp MultiplyByQuantizedMultiplier, with the saturated left shift).
 *
 * Called once per output element of every int8 kernel, so it is written for 32-bit cores:
 * 32-bit arithmetic everywhere except the one 32x32->64 product (a single SMULL on
 * Cortex-M7).
 */
#include "mt_runtime.h"

/* '>>' of a negative value is implementation-defined in C99; every compiler this runtime
 * targets (gcc, clang, arm-none-eabi-gcc) shifts arithmetically, and this line refuses to
 * compile where that is not so. */
typedef char mt_requantize_needs_arithmetic_shift[((-8) >> 1) == -4 ? 1 : -1];
typedef char mt_requantize_needs_arithmetic_shift64[(((int64_t)-8) >> 1) == -4 ? 1 : -1];

int32_t mt_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    int32_t x = acc;
    int32_t high;
    int32_t mask;
    int32_t remainder;
    int32_t threshold;

    /* Left shift, saturated (TFLite leaves the overflow undefined; we define it):
     * acc * 2^left fits int32 exactly when acc is in [-2^(31-left), 2^(31-left) - 1]. */
    if (left > 0) {
        const int32_t limit = (int32_t)(((uint32_t)1 << (31 - left)) - 1u);
        if (acc > limit) {
            x = INT32_MAX;
        } else if (acc < -limit - 1) {
            x = INT32_MIN;
        } else {
            x = acc * ((int32_t)1 << left);
        }
    }

    /* SaturatingRoundingDoublingHighMul: (x * m + nudge) / 2^31, the nudge rounding half away
     * from zero (2^30 for ab >= 0, 1 - 2^30 below) and the division truncating toward zero.
     * That equals floor((ab + 2^30) / 2^31) for both signs: for ab < 0 the numerator
     * v = ab + 1 - 2^30 is negative, and trunc(v / 2^31) = ceil(v / 2^31)
     * = floor((v + 2^31 - 1) / 2^31) = floor((ab + 2^30) / 2^31). So it is one multiply-add and
     * an arithmetic shift (SMLAL-class code on Cortex-M7) instead of a 64-bit division, which
     * is a library call there. |x * m| <= 2^62 fits int64; only INT32_MIN * INT32_MIN would
     * give 2^31, saturated. */
    if (x == INT32_MIN && multiplier == INT32_MIN) {
        high = INT32_MAX;
    } else {
        high = (int32_t)(((int64_t)x * (int64_t)multiplier + ((int64_t)1 << 30)) >> 31);
    }

    /* RoundingDivideByPOT: floor(high / 2^right) (arithmetic shift), plus one when the
     * remainder is above half: strictly above for positives, at or above for negatives,
     * i.e. halves round away from zero. int32_t is two's complement (C99 7.18.1.1), so '&'
     * gives the non-negative remainder. right <= 31, so the mask fits int32. */
    if (right == 0) {
        return high;
    }
    mask = (int32_t)(((uint32_t)1 << right) - 1u);
    remainder = high & mask;
    threshold = (mask >> 1) + (high < 0 ? 1 : 0);
    return (high >> right) + (remainder > threshold ? 1 : 0);
}
