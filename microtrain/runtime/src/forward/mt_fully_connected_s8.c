/*
 * mt_fully_connected_s8: int8 FULLY_CONNECTED, as interp/reference.py _fully_connected:
 * acc[o] = sum_i w[o][i] * (x[i] - z_x) + b[o], requantize per output channel, + z_y, clamp.
 */
#include "mt_nn.h"

mt_status mt_fully_connected_s8(const mt_fc_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                const int8_t *weights, const int32_t *bias, int8_t *output)
{
    int32_t o;
    mt_status st;

    /* read params, check consistency */
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || input == NULL || weights == NULL ||
        output == NULL) {
        return MT_ERR_NULL;
    }
    if (p->in_c < 1 || p->out_c < 1) {
        return MT_ERR_SHAPE;
    }
    if ((st = mt_nn_check_act(p->input_zero_point, p->output_zero_point, p->act_min, p->act_max)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_quant(q->multiplier, q->shift, p->out_c)) != MT_OK) {
        return st;
    }
    /* Accumulator bound: in_c products of magnitude <= 255*128 (mt_nn.h). */
    if (p->in_c > MT_NN_MAX_DOT_LENGTH) {
        return MT_ERR_OVERFLOW;
    }

    /* loops */
    for (o = 0; o < p->out_c; ++o) {
        const int8_t *w = weights + o * p->in_c;
        int32_t acc = mt_nn_dot_s8(input, w, p->in_c, p->input_zero_point);
        if (bias != NULL) {
            acc = mt_nn_sat_add_s32(acc, bias[o]);
        }
        /* one requantize call, offset, clamp, store */
        output[o] = mt_nn_offset_clamp(mt_requantize(acc, q->multiplier[o], q->shift[o]), p->output_zero_point,
                                       p->act_min, p->act_max);
    }
    return MT_OK;
}
