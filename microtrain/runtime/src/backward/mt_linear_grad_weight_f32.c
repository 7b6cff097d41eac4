/* mt_linear_grad_weight_f32: weight gradient of the fp32 head for selected rows,
 * grad_weight[row][i] = grad_output[o] * x[i]. */
#include "mt_nn.h"

mt_status mt_linear_grad_weight_f32(const mt_fc_params *p, const float *input, const float *grad_output,
                                    const mt_channels *ch, float *grad_weight)
{
    int32_t j, i;
    mt_status st;

    if (p == NULL || input == NULL || grad_output == NULL || ch == NULL || grad_weight == NULL) {
        return MT_ERR_NULL;
    }
    if (p->in_c < 1 || p->out_c < 1) {
        return MT_ERR_SHAPE;
    }
    if ((st = mt_nn_check_channels(ch, p->out_c)) != MT_OK) {
        return st;
    }
    for (j = ch->begin; j < ch->end; ++j) {
        const float g = grad_output[mt_nn_channel(ch, j)];
        float *row = grad_weight + (j - ch->begin) * p->in_c;
        for (i = 0; i < p->in_c; ++i) {
            row[i] = g * input[i];
        }
    }
    return MT_OK;
}
