/*
 * mt_depthwise_conv2d_grad_input_f32: input gradient of a depthwise conv; the same
 * expression and summation order as mt_conv2d_grad_input_f32 with groups == in_c == out_c
 * (hence bit-exact with it), without the per-group inner loop.
 */
#include "mt_nn.h"

mt_status mt_depthwise_conv2d_grad_input_f32(const mt_conv_params *p, const float *weight_scale,
                                             const int8_t *weights, const float *grad_output, float *grad_input)
{
    int32_t n, oy, ox, c;
    mt_status st;

    if (p == NULL || weight_scale == NULL || weights == NULL || grad_output == NULL || grad_input == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (p->groups != p->in_c || p->out_c != p->in_c) {
        return MT_ERR_SHAPE;
    }

    n = p->in_h * p->in_w * p->in_c;
    for (oy = 0; oy < n; ++oy) {
        grad_input[oy] = 0.0f;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            const float *g = grad_output + ((int32_t)oy * p->out_w + ox) * p->out_c;
            for (c = 0; c < p->out_c; ++c) {
                const float gs = g[c] * weight_scale[c];
                const int8_t *w = weights + (int32_t)c * p->kernel_h * p->kernel_w;
                int32_t ky, kx;
                for (ky = 0; ky < p->kernel_h; ++ky) {
                    const int32_t iy = y0 + ky;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->kernel_w; ++kx) {
                        const int32_t ix = x0 + kx;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        grad_input[((int32_t)iy * p->in_w + ix) * p->in_c + c] += gs * (float)w[ky * p->kernel_w + kx];
                    }
                }
            }
        }
    }
    return MT_OK;
}
