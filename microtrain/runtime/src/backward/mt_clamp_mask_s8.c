/*
 * mt_clamp_mask_s8: the derivative of an output clamp (ReLU/ReLU6 folded into the int8
 * range) as one bit per element, 1 where act_min < y < act_max. Saving this instead of the
 * int8 output costs 1/8 of the memory when only the clamp derivative is needed.
 */
#include "mt_nn.h"

mt_status mt_clamp_mask_s8(const int8_t *y, int32_t n, int32_t act_min, int32_t act_max, uint8_t *mask)
{
    int32_t i;

    if (y == NULL || mask == NULL) {
        return MT_ERR_NULL;
    }
    if (n < 0) {
        return MT_ERR_SHAPE;
    }
    /* act_min < v < act_max  <=>  (uint32_t)(v - act_min - 1) < act_max - act_min - 1, with the
     * bounds first clipped to [-129, 128] (the same predicate for int8 v; no int32 overflow) and
     * an empty range giving 0. Each mask byte is built in a register, 8 elements at a time. */
    {
        const int32_t lo = act_min < -129 ? -129 : act_min > 128 ? 128 : act_min;
        const int32_t hi = act_max < -129 ? -129 : act_max > 128 ? 128 : act_max;
        const uint32_t span = hi - lo > 1 ? (uint32_t)(hi - lo - 1) : 0u;
        const int32_t lo1 = lo + 1;
        for (i = 0; i + 8 <= n; i += 8) {
            const int8_t *v = y + i;
            mask[i >> 3] = (uint8_t)(((uint32_t)((uint32_t)(v[0] - lo1) < span)) |
                                     ((uint32_t)((uint32_t)(v[1] - lo1) < span) << 1) |
                                     ((uint32_t)((uint32_t)(v[2] - lo1) < span) << 2) |
                                     ((uint32_t)((uint32_t)(v[3] - lo1) < span) << 3) |
                                     ((uint32_t)((uint32_t)(v[4] - lo1) < span) << 4) |
                                     ((uint32_t)((uint32_t)(v[5] - lo1) < span) << 5) |
                                     ((uint32_t)((uint32_t)(v[6] - lo1) < span) << 6) |
                                     ((uint32_t)((uint32_t)(v[7] - lo1) < span) << 7));
        }
        if (i < n) { /* the last byte: its unused high bits stay 0 */
            uint32_t m = 0;
            int32_t k;
            for (k = 0; i + k < n; ++k) {
                m |= (uint32_t)((uint32_t)(y[i + k] - lo1) < span) << k;
            }
            mask[i >> 3] = (uint8_t)m;
        }
    }
    return MT_OK;
}
