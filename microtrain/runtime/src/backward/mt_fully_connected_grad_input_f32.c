/* mt_fully_connected_grad_input_f32: gradient w.r.t. the real FC input,
 * grad_input[i] = sum_o (grad_output[o] * s_w[o]) * (float)w[o][i], o ascending. */
#include "mt_nn.h"

mt_status mt_fully_connected_grad_input_f32(const mt_fc_params *p, const float *weight_scale, const int8_t *weights,
                                            const float *grad_output, float *grad_input)
{
    int32_t o, i;

    if (p == NULL || weight_scale == NULL || weights == NULL || grad_output == NULL || grad_input == NULL) {
        return MT_ERR_NULL;
    }
    if (p->in_c < 1 || p->out_c < 1) {
        return MT_ERR_SHAPE;
    }
    for (i = 0; i < p->in_c; ++i) {
        grad_input[i] = 0.0f;
    }
    /* Row-major walk of the weights (contiguous reads); per element the sum still runs
     * over o ascending. */
    for (o = 0; o < p->out_c; ++o) {
        const float gs = grad_output[o] * weight_scale[o];
        const int8_t *w = weights + o * p->in_c;
        for (i = 0; i < p->in_c; ++i) {
            grad_input[i] += gs * (float)w[i];
        }
    }
    return MT_OK;
}
