/*
 * mt_depthwise_conv2d_s8: int8 depthwise CONV2D (groups == in_c == out_c, weights
 * [c][kh][kw][1]); the result equals mt_conv2d_s8 with those groups. Each output channel
 * reads one input channel, so the inner loop runs over the kernel window only.
 */
#include "mt_nn.h"

mt_status mt_depthwise_conv2d_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output)
{
    int32_t oy, ox, c;
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

    /* loops; the part of the kernel window inside the input is found once per output pixel
     * (padded positions contribute (z_x - z_x) = 0 and are skipped), not once per channel */
    store = mt_nn_store_of(bias, q, p);
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
            int8_t *y = output + ((int32_t)oy * p->out_w + ox) * p->out_c;
            const int32_t full3x3 = p->kernel_h == 3 && p->kernel_w == 3 && ky_end - ky_begin == 3 &&
                                    kx_end - kx_begin == 3; /* the whole window inside: written out */
            for (c = 0; c < p->out_c; ++c) {
                const int8_t *w = weights + (int32_t)c * p->kernel_h * p->kernel_w;
                int32_t acc = 0;
                int32_t ky;
                if (full3x3) {
                    const int8_t *r0 = input + (origin + c);
                    acc = mt_nn_dw_3x3_s8(r0, r0 + p->in_w * p->in_c, r0 + 2 * p->in_w * p->in_c, p->in_c, w,
                                          p->input_zero_point);
                }
                for (ky = full3x3 ? ky_end : ky_begin; ky < ky_end; ++ky) {
                    acc += mt_nn_dw_row_s8(input + (origin + (int32_t)ky * p->in_w * p->in_c + kx_begin * p->in_c + c),
                                           p->in_c, w + ky * p->kernel_w + kx_begin, kx_end - kx_begin,
                                           p->input_zero_point);
                }
                y[c] = mt_nn_store_s8(acc, &store, c); /* bias, one requantize call, offset, clamp, store */
            }
        }
    }
    return MT_OK;
}
