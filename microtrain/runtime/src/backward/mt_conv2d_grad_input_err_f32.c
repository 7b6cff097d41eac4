/*
 * mt_conv2d_grad_input_err_f32: input gradient of a conv (any groups) from an integer error.
 * Exactly mt_conv2d_grad_input_f32 (scatter form, the same loops and float32 expression) on
 * the error d^ = (float)code * 2^e, which is exact: bit-exact with that kernel on d^. With a
 * row table (a split trained weight, compiler/split_trained_rows.py) row oc is read at rows[oc].
 */
#include "mt_nn_err.h"

mt_status mt_conv2d_grad_input_err_f32(const mt_conv_params *p, const float *weight_scale, const int8_t *weights,
                                       const int8_t *const *rows, const mt_grad_codes *err, float *grad_input)
{
    int32_t in_per_group, out_per_group, n, oy, ox, oc;
    float unit;
    mt_status st;

    if (p == NULL || weight_scale == NULL || (weights == NULL && rows == NULL) || grad_input == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_error(err)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    in_per_group = p->in_c / p->groups;
    out_per_group = p->out_c / p->groups;
    unit = mt_nn_pow2f(err->exponent);

    n = p->in_h * p->in_w * p->in_c;
    for (oy = 0; oy < n; ++oy) {
        grad_input[oy] = 0.0f;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            const int32_t at = ((int32_t)oy * p->out_w + ox) * p->out_c;
            for (oc = 0; oc < p->out_c; ++oc) {
                const float gs = ((float)mt_nn_err_code(err, at + oc) * unit) * weight_scale[oc];
                const int32_t first_in = (oc / out_per_group) * in_per_group;
                const int8_t *w = rows != NULL ? rows[oc]
                                               : weights + (int32_t)oc * p->kernel_h * p->kernel_w * in_per_group;
                int32_t ky, kx, i;
                for (ky = 0; ky < p->kernel_h; ++ky) {
                    const int32_t iy = y0 + ky;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (kx = 0; kx < p->kernel_w; ++kx) {
                        const int32_t ix = x0 + kx;
                        float *gi;
                        const int8_t *wk;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        gi = grad_input + ((int32_t)iy * p->in_w + ix) * p->in_c + first_in;
                        wk = w + (ky * p->kernel_w + kx) * in_per_group;
                        for (i = 0; i < in_per_group; ++i) {
                            gi[i] += gs * (float)wk[i];
                        }
                    }
                }
            }
        }
    }
    return MT_OK;
}
