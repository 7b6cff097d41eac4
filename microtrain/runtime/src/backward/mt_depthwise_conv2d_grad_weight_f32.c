/*
 * mt_depthwise_conv2d_grad_weight_f32: weight gradient of selected channels of a depthwise
 * conv, the same expression and order as mt_conv2d_grad_weight_f32. Output channel c reads
 * only input channel c, so a sub-tensor update needs only the kept channels of the input:
 * with input_sliced = 1 the saved input is [in_h][in_w][ch->count] (mt_gather_channels_s8).
 */
#include "mt_nn.h"

mt_status mt_depthwise_conv2d_grad_weight_f32(const mt_conv_params *p, float input_scale, const int8_t *input,
                                              int32_t input_sliced, const float *grad_output,
                                              const mt_channels *ch, float *grad_weight)
{
    int32_t k_size, in_stride, j;
    mt_status st;

    if (p == NULL || input == NULL || grad_output == NULL || ch == NULL || grad_weight == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (p->groups != p->in_c || p->out_c != p->in_c) {
        return MT_ERR_SHAPE;
    }
    if (!mt_nn_is_int8(p->input_zero_point) || (input_sliced != 0 && input_sliced != 1)) {
        return MT_ERR_PARAM;
    }
    if ((st = mt_nn_check_channels(ch, p->out_c)) != MT_OK) {
        return st;
    }
    k_size = p->kernel_h * p->kernel_w;
    in_stride = input_sliced ? ch->count : p->in_c;

    for (j = ch->begin; j < ch->end; ++j) {
        const int32_t c = mt_nn_channel(ch, j);
        const int8_t *x = input + (input_sliced ? j : c);
        float *acc = grad_weight + (j - ch->begin) * k_size;
        int32_t e, oy, ox;
        for (e = 0; e < k_size; ++e) {
            acc[e] = 0.0f;
        }
        /* window bounds once per output pixel; additions still in output-pixel order */
        for (oy = 0; oy < p->out_h; ++oy) {
            const int32_t y0 = oy * p->stride_h - p->pad_top;
            const int32_t ky_begin = y0 < 0 ? -y0 : 0;
            const int32_t ky_end = p->in_h - y0 < p->kernel_h ? p->in_h - y0 : p->kernel_h;
            for (ox = 0; ox < p->out_w; ++ox) {
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                const int32_t kx_begin = x0 < 0 ? -x0 : 0;
                const int32_t kx_end = p->in_w - x0 < p->kernel_w ? p->in_w - x0 : p->kernel_w;
                const float g = grad_output[((int32_t)oy * p->out_w + ox) * p->out_c + c];
                int32_t ky, kx;
                for (ky = ky_begin; ky < ky_end; ++ky) {
                    /* integer index (never a pointer before the array), in units of in_stride */
                    const int8_t *x_row = x + ((int32_t)(y0 + ky) * p->in_w + x0 + kx_begin) * in_stride;
                    float *a = acc + ky * p->kernel_w;
                    for (kx = kx_begin; kx < kx_end; ++kx) {
                        a[kx] += g * (float)((int32_t)x_row[(kx - kx_begin) * in_stride] - p->input_zero_point);
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
