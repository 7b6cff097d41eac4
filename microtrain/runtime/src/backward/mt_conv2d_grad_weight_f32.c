/*
 * mt_conv2d_grad_weight_f32: gradient w.r.t. the real weights of selected output channels
 * of a conv (any groups): dL/dW[oc][ky][kx][i] = sum_{oy,ox} dL/dy[oy][ox][oc] * x_real[..].
 *
 * One call computes the channels ch->index[begin..end), so the generated code can compute
 * one channel, apply its update and reuse the buffer for the next (no full gradient alive).
 * Only the selected channels of grad_output are read. The input scale is applied once per
 * gradient element at the end: sum g * (x - z_x) first (x - z_x exact), then * s_x.
 */
#include "mt_nn.h"

mt_status mt_conv2d_grad_weight_f32(const mt_conv_params *p, float input_scale, const int8_t *input,
                                    const float *grad_output, const mt_channels *ch, float *grad_weight)
{
    int32_t in_per_group, out_per_group, k_size, j;
    mt_status st;

    if (p == NULL || input == NULL || grad_output == NULL || ch == NULL || grad_weight == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (!mt_nn_is_int8(p->input_zero_point)) {
        return MT_ERR_PARAM;
    }
    if ((st = mt_nn_check_channels(ch, p->out_c)) != MT_OK) {
        return st;
    }
    in_per_group = p->in_c / p->groups;
    out_per_group = p->out_c / p->groups;
    k_size = p->kernel_h * p->kernel_w * in_per_group;

    for (j = ch->begin; j < ch->end; ++j) {
        const int32_t oc = mt_nn_channel(ch, j);
        const int32_t first_in = (oc / out_per_group) * in_per_group;
        float *acc = grad_weight + (j - ch->begin) * k_size;
        int32_t e, oy, ox;
        for (e = 0; e < k_size; ++e) {
            acc[e] = 0.0f;
        }
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const float g = grad_output[((int32_t)oy * p->out_w + ox) * p->out_c + oc];
                int32_t ky, kx, i;
                for (ky = 0; ky < p->kernel_h; ++ky) {
                    const int32_t iy = y0 + ky;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->kernel_w; ++kx) {
                        const int32_t ix = x0 + kx;
                        const int8_t *x;
                        float *a;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        x = input + ((int32_t)iy * p->in_w + ix) * p->in_c + first_in;
                        a = acc + (ky * p->kernel_w + kx) * in_per_group;
                        for (i = 0; i < in_per_group; ++i) {
                            a[i] += g * (float)((int32_t)x[i] - p->input_zero_point);
                        }
                    }
                }
            }
        }
        for (e = 0; e < k_size; ++e) {
            acc[e] = acc[e] * input_scale;
        }
    }
    return MT_OK;
}
