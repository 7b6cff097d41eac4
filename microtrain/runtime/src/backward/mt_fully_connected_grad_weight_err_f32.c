/* mt_fully_connected_grad_weight_err_f32: weight gradient of selected output channels of an
 * FC layer from an integer error: grad[row][i] = (float)(code[o] * (x[i] - z_x)) *
 * (2^e * input_scale); the product is exact in int32, the float conversion exact (< 2^24). */
#include "mt_nn_err.h"

mt_status mt_fully_connected_grad_weight_err_f32(const mt_fc_params *p, float input_scale, const int8_t *input,
                                                 const mt_grad_codes *err, const mt_channels *ch, float *grad_weight)
{
    int32_t j, i;
    float scale;
    mt_status st;

    if (p == NULL || input == NULL || ch == NULL || grad_weight == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_error(err)) != MT_OK) {
        return st;
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
    scale = mt_nn_pow2f(err->exponent) * input_scale;
    for (j = ch->begin; j < ch->end; ++j) {
        const int32_t code = mt_nn_err_code(err, mt_nn_channel(ch, j));
        float *row = grad_weight + (j - ch->begin) * p->in_c;
        for (i = 0; i < p->in_c; ++i) {
            row[i] = (float)(code * ((int32_t)input[i] - p->input_zero_point)) * scale;
        }
    }
    return MT_OK;
}
