/* mt_apply_mask_f32: zero the gradient where the clamp was saturated (mask bit 0). */
#include "mt_nn.h"

mt_status mt_apply_mask_f32(const float *grad_in, const uint8_t *mask, int32_t n, float *grad_out)
{
    int32_t i;

    if (grad_in == NULL || mask == NULL || grad_out == NULL) {
        return MT_ERR_NULL;
    }
    if (n < 0) {
        return MT_ERR_SHAPE;
    }
    for (i = 0; i < n; ++i) {
        grad_out[i] = ((mask[i >> 3] >> (i & 7)) & 1u) ? grad_in[i] : 0.0f;
    }
    return MT_OK;
}
