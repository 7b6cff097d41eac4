/*
 * mt_pointwise_conv2d_grad_weight_f32: weight gradient of selected output channels of a 1x1,
 * stride 1, unpadded, single group conv; bit-exact with mt_conv2d_grad_weight_f32. Each
 * gradient element sums g[n] * (x[n][i] - z_x) over pixels n ascending, as the general
 * kernel does; four pixels are added per pass, in the same order, so the running sum stays in
 * a register.
 */
#include "mt_nn.h"

#define MT_NN_PW_BLOCK 4

mt_status mt_pointwise_conv2d_grad_weight_f32(const mt_conv_params *p, float input_scale, const int8_t *input,
                                              const float *grad_output, const mt_channels *ch, float *grad_weight)
{
    int32_t pixels, j;
    mt_status st;

    if (p == NULL || input == NULL || grad_output == NULL || ch == NULL || grad_weight == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (p->kernel_h != 1 || p->kernel_w != 1 || p->stride_h != 1 || p->stride_w != 1 || p->groups != 1 ||
        p->pad_top != 0 || p->pad_left != 0 || p->pad_bottom != 0 || p->pad_right != 0) {
        return MT_ERR_SHAPE;
    }
    if (!mt_nn_is_int8(p->input_zero_point)) {
        return MT_ERR_PARAM;
    }
    if ((st = mt_nn_check_channels(ch, p->out_c)) != MT_OK) {
        return st;
    }

    pixels = p->in_h * p->in_w;
    for (j = ch->begin; j < ch->end; ++j) {
        const int32_t oc = mt_nn_channel(ch, j);
        const int32_t z = p->input_zero_point;
        float *acc = grad_weight + (j - ch->begin) * p->in_c;
        int32_t n, i;
        for (i = 0; i < p->in_c; ++i) {
            acc[i] = 0.0f;
        }
        for (n = 0; n + MT_NN_PW_BLOCK <= pixels; n += MT_NN_PW_BLOCK) {
            const float g0 = grad_output[n * p->out_c + oc];
            const float g1 = grad_output[(n + 1) * p->out_c + oc];
            const float g2 = grad_output[(n + 2) * p->out_c + oc];
            const float g3 = grad_output[(n + 3) * p->out_c + oc];
            const int8_t *x0 = input + n * p->in_c;
            const int8_t *x1 = x0 + p->in_c;
            const int8_t *x2 = x1 + p->in_c;
            const int8_t *x3 = x2 + p->in_c;
            for (i = 0; i < p->in_c; ++i) {
                float s = acc[i];
                s = s + g0 * (float)((int32_t)x0[i] - z);
                s = s + g1 * (float)((int32_t)x1[i] - z);
                s = s + g2 * (float)((int32_t)x2[i] - z);
                s = s + g3 * (float)((int32_t)x3[i] - z);
                acc[i] = s;
            }
        }
        for (; n < pixels; ++n) {
            const float g = grad_output[n * p->out_c + oc];
            const int8_t *x = input + n * p->in_c;
            for (i = 0; i < p->in_c; ++i) {
                acc[i] += g * (float)((int32_t)x[i] - z);
            }
        }
        for (i = 0; i < p->in_c; ++i) {
            acc[i] = acc[i] * input_scale;
        }
    }
    return MT_OK;
}
