/*
 * mt_pointwise_conv2d_grad_input_rows_f32: input gradient of a 1x1, stride 1, unpadded, single
 * group conv; bit-exact with mt_conv2d_grad_input_f32. Each input-gradient element of pixel n
 * receives gs[oc] * w[oc][i] for oc ascending, exactly as in the general kernel; here four
 * output channels are added in one pass, in the same order, so the running sum stays in a
 * register instead of being loaded and stored once per output channel. Weight row oc is
 * rows[oc] when rows is not NULL (trained rows in RAM, frozen rows in flash), else
 * weights + oc * in_c.
 */
#include "mt_nn.h"

#define MT_NN_PW_BLOCK 4

mt_status mt_pointwise_conv2d_grad_input_rows_f32(const mt_conv_params *p, const float *weight_scale,
                                                  const int8_t *weights, const int8_t *const *rows,
                                                  const float *grad_output, float *grad_input)
{
    int32_t pixels, n, oc, i;
    mt_status st;

    if (p == NULL || weight_scale == NULL || (weights == NULL && rows == NULL) || grad_output == NULL || grad_input == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (p->kernel_h != 1 || p->kernel_w != 1 || p->stride_h != 1 || p->stride_w != 1 || p->groups != 1 ||
        p->pad_top != 0 || p->pad_left != 0 || p->pad_bottom != 0 || p->pad_right != 0) {
        return MT_ERR_SHAPE;
    }

    pixels = p->in_h * p->in_w;
    for (n = 0; n < pixels; ++n) {
        const float *g = grad_output + n * p->out_c;
        float *gi = grad_input + n * p->in_c;
        for (i = 0; i < p->in_c; ++i) {
            gi[i] = 0.0f;
        }
        for (oc = 0; oc + MT_NN_PW_BLOCK <= p->out_c; oc += MT_NN_PW_BLOCK) {
            const float gs0 = g[oc] * weight_scale[oc];
            const float gs1 = g[oc + 1] * weight_scale[oc + 1];
            const float gs2 = g[oc + 2] * weight_scale[oc + 2];
            const float gs3 = g[oc + 3] * weight_scale[oc + 3];
            const int8_t *w0 = rows != NULL ? rows[oc] : weights + oc * p->in_c;
            const int8_t *w1 = rows != NULL ? rows[oc + 1] : w0 + p->in_c;
            const int8_t *w2 = rows != NULL ? rows[oc + 2] : w1 + p->in_c;
            const int8_t *w3 = rows != NULL ? rows[oc + 3] : w2 + p->in_c;
            for (i = 0; i < p->in_c; ++i) {
                float s = gi[i];
                s = s + gs0 * (float)w0[i];
                s = s + gs1 * (float)w1[i];
                s = s + gs2 * (float)w2[i];
                s = s + gs3 * (float)w3[i];
                gi[i] = s;
            }
        }
        for (; oc < p->out_c; ++oc) {
            const float gs = g[oc] * weight_scale[oc];
            const int8_t *w = rows != NULL ? rows[oc] : weights + oc * p->in_c;
            for (i = 0; i < p->in_c; ++i) {
                gi[i] += gs * (float)w[i];
            }
        }
    }
    return MT_OK;
}
