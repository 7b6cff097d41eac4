/*
 * mt_conv2d_s8: int8 CONV2D with any number of groups (reference kernel).
 * Same arithmetic as interp/reference.py _conv2d: int32 accumulation of w * (x - z_x) over
 * the receptive field (padded positions contribute (z_x - z_x) = 0, so they are skipped),
 * + bias, one requantization per output, + z_y, clamp to [act_min, act_max].
 */
#include "mt_nn.h"

mt_status mt_conv2d_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                       const int8_t *weights, const int32_t *bias, int8_t *output)
{
    int32_t in_per_group, out_per_group, oy, ox, oc;
    mt_status st;

    /* read params, check consistency */
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || input == NULL || weights == NULL ||
        output == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_act(p->input_zero_point, p->output_zero_point, p->act_min, p->act_max)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_quant(q->multiplier, q->shift, p->out_c)) != MT_OK) {
        return st;
    }
    in_per_group = p->in_c / p->groups;
    out_per_group = p->out_c / p->groups;
    /* Accumulator bound: at most kernel_h*kernel_w*in_per_group products of magnitude
     * <= 255*128 each; with MT_NN_MAX_DOT_LENGTH of them the sum fits int32 (mt_nn.h). */
    if ((int64_t)p->kernel_h * p->kernel_w * in_per_group > MT_NN_MAX_DOT_LENGTH) {
        return MT_ERR_OVERFLOW;
    }

    /* loops; the part of the kernel window inside the input is found once per output pixel
     * (padded positions contribute (z_x - z_x) = 0 and are skipped) */
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        const int32_t ky_begin = y0 < 0 ? -y0 : 0;
        const int32_t ky_end = p->in_h - y0 < p->kernel_h ? p->in_h - y0 : p->kernel_h;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            const int32_t kx_begin = x0 < 0 ? -x0 : 0;
            const int32_t kx_end = p->in_w - x0 < p->kernel_w ? p->in_w - x0 : p->kernel_w;
            /* flat index of window tap (0, 0); negative when the window starts in the padding
             * (kept an integer: a pointer before the array would be undefined behaviour) */
            const int32_t origin = ((int32_t)y0 * p->in_w + x0) * p->in_c;
            const int32_t run_taps = p->groups == 1 ? kx_end - kx_begin : 1; /* taps per dot product */
            int8_t *y = output + ((int32_t)oy * p->out_w + ox) * p->out_c;
            for (oc = 0; oc < p->out_c; ++oc) {
                const int32_t first_in = (oc / out_per_group) * in_per_group;
                const int8_t *w = weights + (int32_t)oc * p->kernel_h * p->kernel_w * in_per_group;
                int32_t acc = 0;
                int32_t ky, kx;
                for (ky = ky_begin; ky < ky_end; ++ky) {
                    /* one group: the window row inside the input is one contiguous run */
                    for (kx = kx_begin; kx < kx_end; kx += run_taps) {
                        const int8_t *x = input + (origin + ((int32_t)ky * p->in_w + kx) * p->in_c + first_in);
                        const int8_t *wk = w + (ky * p->kernel_w + kx) * in_per_group;
                        acc += mt_nn_dot_s8(x, wk, run_taps * in_per_group, p->input_zero_point);
                    }
                }
                if (bias != NULL) {
                    acc = mt_nn_sat_add_s32(acc, bias[oc]);
                }
                /* one requantize call, offset, clamp, store */
                y[oc] = mt_nn_offset_clamp(mt_requantize(acc, q->multiplier[oc], q->shift[oc]), p->output_zero_point,
                                           p->act_min, p->act_max);
            }
        }
    }
    return MT_OK;
}
