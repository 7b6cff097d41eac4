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
    /* The part of the window inside the input is found once per output pixel; the order of
     * the additions into each grad_input element is unchanged (output pixels ascending). */
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        const int32_t ky_begin = y0 < 0 ? -y0 : 0;
        const int32_t ky_end = p->in_h - y0 < p->kernel_h ? p->in_h - y0 : p->kernel_h;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            const int32_t kx_begin = x0 < 0 ? -x0 : 0;
            const int32_t kx_end = p->in_w - x0 < p->kernel_w ? p->in_w - x0 : p->kernel_w;
            /* flat index of window tap (0, 0), negative inside the padding (an integer, not a
             * pointer: a pointer before the array would be undefined behaviour) */
            const int32_t origin = ((int32_t)y0 * p->in_w + x0) * p->in_c;
            const float *g = grad_output + ((int32_t)oy * p->out_w + ox) * p->out_c;
            for (c = 0; c < p->out_c; ++c) {
                const float gs = g[c] * weight_scale[c];
                const int8_t *w = weights + (int32_t)c * p->kernel_h * p->kernel_w;
                int32_t ky, kx;
                for (ky = ky_begin; ky < ky_end; ++ky) {
                    float *gi = grad_input + (origin + ((int32_t)ky * p->in_w + kx_begin) * p->in_c + c);
                    const int8_t *w_row = w + ky * p->kernel_w;
                    for (kx = kx_begin; kx < kx_end; ++kx) {
                        gi[(kx - kx_begin) * p->in_c] += gs * (float)w_row[kx];
                    }
                }
            }
        }
    }
    return MT_OK;
}
