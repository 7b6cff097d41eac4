/* mt_add_f32: element-wise sum, to accumulate the gradient of a tensor with two consumers. */
#include "mt_nn.h"

mt_status mt_add_f32(const float *a, const float *b, int32_t n, float *out)
{
    int32_t i;

    if (a == NULL || b == NULL || out == NULL) {
        return MT_ERR_NULL;
    }
    if (n < 0) {
        return MT_ERR_SHAPE;
    }
    for (i = 0; i < n; ++i) {
        out[i] = a[i] + b[i];
    }
    return MT_OK;
}
