/*
 * mt_requantize: acc * M in fixed point, the one C definition of microtrain.quant.requantize
 * (TFLite / gemmlowp MultiplyByQuantizedMultiplier, with the saturated left shift).
 */
#include "mt_runtime.h"

int32_t mt_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int64_t pot = (int64_t)1 << right;
    int64_t x;
    int64_t high;
    int64_t remainder;
    int64_t threshold;
    int64_t floor_part;

    /* Left shift, saturated (TFLite leaves the overflow undefined; we define it).
     * |acc| <= 2^31 and left <= 30, so the int64 product is at most 2^61. */
    x = (int64_t)acc * ((int64_t)1 << left);
    if (x > INT32_MAX) {
        x = INT32_MAX;
    } else if (x < INT32_MIN) {
        x = INT32_MIN;
    }

    /* SaturatingRoundingDoublingHighMul: (x * m + nudge) / 2^31, the nudge rounding half away
     * from zero and the division truncating toward zero (C99 '/' on int64 does).
     * |x * m| <= 2^62 fits int64; only INT32_MIN * INT32_MIN would give 2^31, saturated. */
    if (x == INT32_MIN && multiplier == INT32_MIN) {
        high = INT32_MAX;
    } else {
        const int64_t ab = x * (int64_t)multiplier;
        const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
        high = (ab + nudge) / ((int64_t)1 << 31);
    }

    /* RoundingDivideByPOT: floor(high / 2^right), plus one when the remainder is above half
     * (strictly above for positives, at or above for negatives: half away from zero).
     * int64_t is two's complement (C99 7.18.1.1), so '&' gives the non-negative remainder;
     * high - remainder is then an exact multiple of 2^right, divided by shifting its
     * magnitude (no right shift of a negative value, which C99 leaves implementation-defined,
     * and no 64-bit division, which is a library call on Cortex-M). |high| <= 2^31. */
    remainder = high & (pot - 1);
    threshold = ((pot - 1) >> 1) + (high < 0 ? 1 : 0);
    floor_part = high - remainder;
    if (floor_part >= 0) {
        floor_part = (int64_t)((uint64_t)floor_part >> right);
    } else {
        floor_part = -(int64_t)((uint64_t)(-floor_part) >> right);
    }
    return (int32_t)(floor_part + (remainder > threshold ? 1 : 0));
}
