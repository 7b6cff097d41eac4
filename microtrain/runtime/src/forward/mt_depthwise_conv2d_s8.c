/*
 * mt_depthwise_conv2d_s8: int8 depthwise CONV2D (groups == in_c == out_c, weights
 * [c][kh][kw][1]); the result equals mt_conv2d_s8 with those groups. Each output channel
 * reads one input channel, so the inner loop runs over the kernel window only.
 * Limits: kernel_h <= 16 (MT_ERR_PARAM otherwise).
 */
#include "mt_nn_dw.h"

mt_status mt_depthwise_conv2d_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output)
{
    int32_t oy;
    mt_nn_store store;
    mt_status st;

    /* read params, check consistency */
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || input == NULL || weights == NULL ||
        output == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (p->groups != p->in_c || p->out_c != p->in_c) {
        return MT_ERR_SHAPE;
    }
    if ((st = mt_nn_check_act(p->input_zero_point, p->output_zero_point, p->act_min, p->act_max)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_quant(q->multiplier, q->shift, p->out_c)) != MT_OK) {
        return st;
    }
    /* Accumulator bound: kernel_h*kernel_w products of magnitude <= 255*128 (mt_nn.h). */
    if ((int64_t)p->kernel_h * p->kernel_w > MT_NN_MAX_DOT_LENGTH) {
        return MT_ERR_OVERFLOW;
    }

    if (p->kernel_h > MT_NN_IB_MAX_KERNEL) {
        return MT_ERR_PARAM;
    }

    /* loops: one output row at a time (mt_nn_dw_row_fast_s8: four channels at a time with
     * SMLAD on pairs of taps where the window lies inside the input and the fast store
     * applies; the reference loop elsewhere, padded taps skipped) */
    store = mt_nn_store_of(bias, q, p);
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        const int32_t ky_begin = y0 < 0 ? -y0 : 0;
        const int32_t ky_end = p->in_h - y0 < p->kernel_h ? p->in_h - y0 : p->kernel_h;
        const int8_t *rows[MT_NN_IB_MAX_KERNEL];
        int32_t ky;
        for (ky = ky_begin; ky < ky_end; ++ky) {
            rows[ky] = input + (y0 + ky) * p->in_w * p->in_c;
        }
        mt_nn_dw_row_fast_s8(p, &store, rows, ky_begin, ky_end, weights, output + oy * p->out_w * p->out_c);
    }
    return MT_OK;
}
