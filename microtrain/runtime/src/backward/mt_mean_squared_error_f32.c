/*
 * mt_mean_squared_error_f32: the reconstruction loss of an autoencoder, the mean of the squared
 * differences between the dequantized output (pred, float32) and the model's own int8 input
 * (target), and its gradient 2 (pred - target) / n. The sum runs in order from 0.0f (mt_runtime.h),
 * the expression the Python twin (runtime/losses.py) evaluates too, so the loss is the same bits
 * everywhere. Element by element, so grad may alias pred.
 */
#include "mt_nn.h"

mt_status mt_mean_squared_error_f32(const float *pred, const int8_t *target, int32_t n, float target_scale,
                                    int32_t target_zero, float *loss, float *grad)
{
    float sum = 0.0f, two_over_n;
    int32_t i;

    if (pred == NULL || target == NULL || loss == NULL) {
        return MT_ERR_NULL;
    }
    if (n < 1) {
        return MT_ERR_SHAPE;
    }
    if (target_zero < -128 || target_zero > 127) {
        return MT_ERR_PARAM;
    }
    two_over_n = 2.0f / (float)n;
    for (i = 0; i < n; ++i) {
        const float d = pred[i] - (float)((int32_t)target[i] - target_zero) * target_scale;
        sum += d * d;
        if (grad != NULL) {
            grad[i] = d * two_over_n;
        }
    }
    *loss = sum * (1.0f / (float)n);
    return MT_OK;
}
