/*
 * mt_conv2d_grad_weight_err_f32: weight gradient of selected output channels of a conv (any
 * groups) from an integer error: per weight element, acc = sum over the output positions of
 * code[oy][ox][oc] * (x - z_x) in int64 (|code| <= 32767, |x - z_x| <= 255: exact for any
 * layer, and in any order), then grad = (float)acc * (2^e * input_scale). 2^e * input_scale is
 * exact, so this is float32(exact sum of d^ * (x - z_x)) * input_scale, the reference's value.
 * A depthwise layer may pass only its kept input channels (input_sliced 1: [in_h][in_w][count]).
 */
#include "mt_nn_err.h"

/* A 1x1 conv, stride 1, no padding, one group: output pixel p reads input pixel p. */
static inline int32_t mt_nn_err_pointwise(const mt_conv_params *p)
{
    return p->kernel_h == 1 && p->kernel_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0
           && p->pad_left == 0 && p->pad_bottom == 0 && p->pad_right == 0 && p->groups == 1;
}

/* The pointwise case, the same integers in another order: pixels outer, input channels inner
 * (contiguous), pixels whose code is 0 skipped, int32 sums held in grad_weight itself (the caller
 * checked pixels * max|code| * 255 <= INT32_MAX), then each converted in place. */
static void mt_nn_err_pointwise_grad(const mt_conv_params *p, float scale, const int8_t *input,
                                     const mt_grad_codes *err, const mt_channels *ch, float *grad_weight)
{
    const int32_t pixels = p->out_h * p->out_w;
    int32_t j, q, i;
    for (j = ch->begin; j < ch->end; ++j) {
        const int32_t oc = mt_nn_channel(ch, j);
        float *gw = grad_weight + (j - ch->begin) * p->in_c;
        int32_t *acc = (int32_t *)(void *)gw; /* same size and alignment as float */
        for (i = 0; i < p->in_c; ++i) {
            acc[i] = 0;
        }
        for (q = 0; q < pixels; ++q) {
            const int32_t code = mt_nn_err_code(err, q * p->out_c + oc);
            const int8_t *x = input + q * p->in_c;
            if (code == 0) {
                continue;
            }
            for (i = 0; i < p->in_c; ++i) {
                acc[i] += code * ((int32_t)x[i] - p->input_zero_point);
            }
        }
        for (i = 0; i < p->in_c; ++i) {
            gw[i] = (float)acc[i] * scale;
        }
    }
}

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

    if (!input_sliced && mt_nn_err_pointwise(p)
        && (int64_t)p->out_h * p->out_w * ((1 << (err->bits - 1)) - 1) * 255 <= INT32_MAX) {
        mt_nn_err_pointwise_grad(p, scale, input, err, ch, grad_weight);
        return MT_OK;
    }
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
