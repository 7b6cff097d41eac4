/* mt_linear_grad_input_f32: input gradient of the fp32 head,
 * grad_input[i] = sum_o grad_output[o] * w[o][i] (o ascending, from 0.0f). */
#include "mt_nn.h"

mt_status mt_linear_grad_input_f32(const mt_fc_params *p, const float *weights, const float *grad_output,
                                   float *grad_input)
{
    int32_t o, i;

    if (p == NULL || weights == NULL || grad_output == NULL || grad_input == NULL) {
        return MT_ERR_NULL;
    }
    if (p->in_c < 1 || p->out_c < 1) {
        return MT_ERR_SHAPE;
    }
    for (i = 0; i < p->in_c; ++i) {
        grad_input[i] = 0.0f;
    }
    for (o = 0; o < p->out_c; ++o) {
        const float g = grad_output[o];
        const float *w = weights + o * p->in_c;
        for (i = 0; i < p->in_c; ++i) {
            grad_input[i] += g * w[i];
        }
    }
    return MT_OK;
}
