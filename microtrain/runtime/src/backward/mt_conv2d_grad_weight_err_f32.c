/*
 * mt_conv2d_grad_weight_err_f32: weight gradient of selected output channels of a conv (any
 * groups) from an integer error: per weight element, acc = sum over the output positions of
 * code[oy][ox][oc] * (x - z_x) in int64 (|code| <= 32767, |x - z_x| <= 255: exact for any
 * layer, and in any order), then grad = (float)acc * (2^e * input_scale). 2^e * input_scale is
 * exact, so this is float32(exact sum of d^ * (x - z_x)) * input_scale, the reference's value.
 * A depthwise layer may pass only its kept input channels (input_sliced 1: [in_h][in_w][count]).
 */
#include "mt_nn_err.h"

mt_status mt_conv2d_grad_weight_err_f32(const mt_conv_params *p, float input_scale, const int8_t *input,
                                        int32_t input_sliced, const mt_grad_codes *err, const mt_channels *ch,
                                        float *grad_weight)
{
    int32_t in_per_group, out_per_group, in_stride, j;
    float scale;
    mt_status st;

    if (p == NULL || input == NULL || ch == NULL || grad_weight == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_error(err)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (!mt_nn_is_int8(p->input_zero_point) || (input_sliced != 0 && input_sliced != 1)
        || (input_sliced && !(p->groups == p->in_c && p->groups == p->out_c))) {
        return MT_ERR_PARAM;
    }
    if ((st = mt_nn_check_channels(ch, p->out_c)) != MT_OK) {
        return st;
    }
    in_per_group = p->in_c / p->groups;
    out_per_group = p->out_c / p->groups;
    scale = mt_nn_pow2f(err->exponent) * input_scale;
    in_stride = input_sliced ? ch->count : p->in_c;

    for (j = ch->begin; j < ch->end; ++j) {
        const int32_t oc = mt_nn_channel(ch, j);
        const int32_t first_in = input_sliced ? j : (oc / out_per_group) * in_per_group;
        float *gw = grad_weight + (j - ch->begin) * p->kernel_h * p->kernel_w * in_per_group;
        int32_t ky, kx, i;
        for (ky = 0; ky < p->kernel_h; ++ky) {
            for (kx = 0; kx < p->kernel_w; ++kx) {
                for (i = 0; i < in_per_group; ++i) {
                    int64_t acc = 0;
                    int32_t oy, ox;
                    for (oy = 0; oy < p->out_h; ++oy) {
                        const int32_t iy = oy * p->stride_h - p->pad_top + ky;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (ox = 0; ox < p->out_w; ++ox) {
                            const int32_t ix = ox * p->stride_w - p->pad_left + kx;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            acc += (int64_t)(mt_nn_err_code(err, ((int32_t)oy * p->out_w + ox) * p->out_c + oc)
                                             * ((int32_t)input[((int32_t)iy * p->in_w + ix) * in_stride + first_in + i]
                                                - p->input_zero_point));
                        }
                    }
                    gw[(ky * p->kernel_w + kx) * in_per_group + i] = (float)acc * scale;
                }
            }
        }
    }
    return MT_OK;
}
