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
    for (i = 0; i < (n + 7) / 8; ++i) {
        mask[i] = 0;
    }
    for (i = 0; i < n; ++i) {
        if ((int32_t)y[i] > act_min && (int32_t)y[i] < act_max) {
            mask[i >> 3] = (uint8_t)(mask[i >> 3] | (1u << (i & 7)));
        }
    }
    return MT_OK;
}
