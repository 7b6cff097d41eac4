/* mt_fully_connected_grad_weight_f32: gradient w.r.t. the real FC weights of the selected
 * rows, an outer product: grad_weight[row][i] = g[o] * ((float)(x[i] - z_x) * s_x). */
#include "mt_nn.h"

mt_status mt_fully_connected_grad_weight_f32(const mt_fc_params *p, float input_scale, const int8_t *input,
                                             const float *grad_output, const mt_channels *ch, float *grad_weight)
{
    int32_t j, i;
    mt_status st;

    if (p == NULL || input == NULL || grad_output == NULL || ch == NULL || grad_weight == NULL) {
        return MT_ERR_NULL;
    }
    if (p->in_c < 1 || p->out_c < 1) {
        return MT_ERR_SHAPE;
    }
    if (!mt_nn_is_int8(p->input_zero_point)) {
        return MT_ERR_PARAM;
    }
    if ((st = mt_nn_check_channels(ch, p->out_c)) != MT_OK) {
        return st;
    }
    for (j = ch->begin; j < ch->end; ++j) {
        const float g = grad_output[mt_nn_channel(ch, j)];
        float *row = grad_weight + (j - ch->begin) * p->in_c;
        for (i = 0; i < p->in_c; ++i) {
            row[i] = g * ((float)((int32_t)input[i] - p->input_zero_point) * input_scale);
        }
    }
    return MT_OK;
}
