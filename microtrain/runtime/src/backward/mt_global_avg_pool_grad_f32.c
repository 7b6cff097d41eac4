/* mt_global_avg_pool_grad_f32: the mean's gradient is spread evenly over the H*W inputs:
 * grad_input[y][x][c] = grad_output[c] / (float)(h*w). */
#include "mt_nn.h"

mt_status mt_global_avg_pool_grad_f32(int32_t h, int32_t w, int32_t c, const float *grad_output,
                                      float *grad_input)
{
    int32_t pixels, n, k;
    float count;

    if (grad_output == NULL || grad_input == NULL) {
        return MT_ERR_NULL;
    }
    if (h < 1 || w < 1 || c < 1) {
        return MT_ERR_SHAPE;
    }
    pixels = h * w;
    count = (float)pixels;
    for (n = 0; n < pixels; ++n) {
        for (k = 0; k < c; ++k) {
            grad_input[n * c + k] = grad_output[k] / count;
        }
    }
    return MT_OK;
}
