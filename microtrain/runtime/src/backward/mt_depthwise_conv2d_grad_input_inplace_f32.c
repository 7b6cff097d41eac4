/*
 * mt_depthwise_conv2d_grad_input_inplace_f32: the input gradient of a depthwise conv whose
 * input and output have the same shape (stride 1, "same" padding), written over its output
 * gradient. Channel c of the input gradient depends only on channel c of the output gradient,
 * so one channel at a time is scattered into a one-plane scratch and then copied over that
 * channel. Each element receives the same terms in the same order (output pixels ascending)
 * as in mt_depthwise_conv2d_grad_input_f32, hence bit-exact with it; the backward then needs
 * one gradient tensor instead of two at its widest point.
 */
#include "mt_nn.h"

mt_status mt_depthwise_conv2d_grad_input_inplace_f32(const mt_conv_params *p, const float *weight_scale,
                                                     const int8_t *weights, float *grad, float *scratch)
{
    int32_t c, oy, ox, k, plane;
    mt_status st;

    if (p == NULL || weight_scale == NULL || weights == NULL || grad == NULL || scratch == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (p->groups != p->in_c || p->out_c != p->in_c || p->out_h != p->in_h || p->out_w != p->in_w) {
        return MT_ERR_SHAPE;
    }

    plane = p->in_h * p->in_w;
    for (c = 0; c < p->in_c; ++c) {
        const int8_t *w = weights + (int32_t)c * p->kernel_h * p->kernel_w;
        for (k = 0; k < plane; ++k) {
            scratch[k] = 0.0f;
        }
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            const int32_t ky_begin = y0 < 0 ? -y0 : 0;
            const int32_t ky_end = p->in_h - y0 < p->kernel_h ? p->in_h - y0 : p->kernel_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t kx_begin = x0 < 0 ? -x0 : 0;
                const int32_t kx_end = p->in_w - x0 < p->kernel_w ? p->in_w - x0 : p->kernel_w;
                const float gs = grad[((int32_t)oy * p->out_w + ox) * p->out_c + c] * weight_scale[c];
                int32_t ky, kx;
                for (ky = ky_begin; ky < ky_end; ++ky) {
                    float *gi = scratch + (y0 + ky) * p->in_w + x0;
                    const int8_t *w_row = w + ky * p->kernel_w;
                    for (kx = kx_begin; kx < kx_end; ++kx) {
                        gi[kx] += gs * (float)w_row[kx];
                    }
                }
            }
        }
        /* every output-gradient value of channel c has been read: overwrite the channel */
        for (k = 0; k < plane; ++k) {
            grad[k * p->in_c + c] = scratch[k];
        }
    }
    return MT_OK;
}
