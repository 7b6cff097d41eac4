/*
 * mt_dequantize_s8_f32: real value of int8 data, out = (float)(x - z) * scale.
 * x - z is an exact small integer, so one float32 rounding (the product) per element.
 */
#include "mt_nn.h"

mt_status mt_dequantize_s8_f32(const int8_t *x, int32_t n, float scale, int32_t zero_point, float *out)
{
    int32_t i;

    if (x == NULL || out == NULL) {
        return MT_ERR_NULL;
    }
    if (n < 0) {
        return MT_ERR_SHAPE;
    }
    if (!mt_nn_is_int8(zero_point)) {
        return MT_ERR_PARAM;
    }
    for (i = 0; i < n; ++i) {
        out[i] = (float)((int32_t)x[i] - zero_point) * scale;
    }
    return MT_OK;
}
