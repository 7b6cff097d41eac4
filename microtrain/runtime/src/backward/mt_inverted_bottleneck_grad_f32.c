/*
 * mt_inverted_bottleneck_grad_f32: the backward through expand 1x1 -> depthwise -> project 1x1,
 * one expanded channel at a time (compiler/stream_block_grads.py).
 *
 * The depthwise conv keeps channels apart, so everything between the projection's output
 * gradient and the expansion's input gradient splits by expanded channel c: plane a (column c
 * of the projection's input gradient, masked) and plane b (its depthwise input gradient,
 * masked) are all that exists of the expanded gradients, instead of two whole H x W x C
 * tensors. Every value is the same float32 expression, summed over the same index in the same
 * order, as in the unfused kernels (mt_runtime.h spells out each), hence bit-exact with them:
 *   - a[n]: o ascending from 0.0f, as mt_pointwise_conv2d_grad_input_f32 sums for element c;
 *   - b: each element receives its terms output pixels ascending, as in
 *     mt_depthwise_conv2d_grad_input_f32 (each output pixel adds at most once to an element);
 *   - bias gradients: positions ascending from 0.0f (mt_bias_grad_f32);
 *   - grad_input[n][i]: zeroed, then one term per channel, c ascending, which is the order in
 *     which mt_pointwise_conv2d_grad_input_f32 adds its output channels;
 *   - a kept row of the expansion weight gradient: pixels ascending from 0.0f, times the input
 *     scale (mt_pointwise_conv2d_grad_weight_f32), then mt_sgd_update_s8 on that row alone.
 * Expansion row c is read for grad_input before it is updated, and never again.
 */
#include "mt_nn.h"

static int mt_nn_bit(const uint8_t *mask, int32_t i)
{
    return (mask[i >> 3] >> (i & 7)) & 1u;
}

/* Position of channel c in the kept list, or -1 if not kept. */
static int32_t mt_nn_kept(const mt_expand_update *upd, int32_t c)
{
    int32_t j;
    if (upd->index == NULL) {
        return c < upd->count ? c : -1;
    }
    for (j = 0; j < upd->count; ++j) {
        if (upd->index[j] == c) {
            return j;
        }
    }
    return -1;
}

mt_status mt_inverted_bottleneck_grad_f32(const mt_inverted_bottleneck_grad_params *p, const float *grad_output,
                                          const int8_t *project_weights, const float *project_scale,
                                          const uint8_t *depthwise_mask, const int8_t *depthwise_weights,
                                          const float *depthwise_scale, const uint8_t *expand_mask,
                                          const int8_t *expand_weights, const int8_t *const *expand_rows,
                                          const float *expand_scale, const int8_t *input,
                                          const mt_expand_update *update, float *grad_input,
                                          float *depthwise_bias_grad, float *expand_bias_grad, float *scratch)
{
    const mt_conv_params *d;
    int32_t c, n, i, oy, ox, C, O, I, out_plane, in_plane;
    float *a, *b;
    mt_status st;
    if (p == NULL || grad_output == NULL || project_weights == NULL || project_scale == NULL ||
        depthwise_mask == NULL || depthwise_weights == NULL || depthwise_scale == NULL || expand_mask == NULL ||
        expand_scale == NULL || scratch == NULL || (expand_weights == NULL && expand_rows == NULL)) {
        return MT_ERR_NULL;
    }
    d = &p->depthwise;
    if ((st = mt_nn_check_conv_shape(d)) != MT_OK) {
        return st;
    }
    C = d->in_c;
    O = p->project_out_c;
    I = p->expand_in_c;
    if (d->groups != C || d->out_c != C || O < 1 || I < 1) {
        return MT_ERR_SHAPE;
    }
    if (update != NULL) {
        if (input == NULL || update->weights == NULL || update->factor == NULL || update->grad_row == NULL) {
            return MT_ERR_NULL;
        }
        if (!mt_nn_is_int8(p->input_zero_point) || update->count < 0 || update->count > C ||
            (update->index == NULL && update->count != C)) {
            return MT_ERR_PARAM;
        }
    }
    out_plane = d->out_h * d->out_w;
    in_plane = d->in_h * d->in_w;
    a = scratch;
    b = scratch + out_plane;
    if (grad_input != NULL) {
        for (i = 0; i < in_plane * I; ++i) {
            grad_input[i] = 0.0f;
        }
    }
    for (c = 0; c < C; ++c) {
        const int8_t *wd = depthwise_weights + c * d->kernel_h * d->kernel_w;
        const int8_t *we = expand_rows != NULL ? expand_rows[c] : expand_weights + c * I;
        const float es = expand_scale[c];
        /* plane a: column c of the projection's input gradient, through the depthwise mask */
        for (n = 0; n < out_plane; ++n) {
            const float *g = grad_output + n * O;
            float s = 0.0f;
            int32_t o;
            for (o = 0; o < O; ++o) {
                s = s + (g[o] * project_scale[o]) * (float)project_weights[o * C + c];
            }
            a[n] = mt_nn_bit(depthwise_mask, n * C + c) ? s : 0.0f;
        }
        if (depthwise_bias_grad != NULL) {
            float s = 0.0f;
            for (n = 0; n < out_plane; ++n) {
                s += a[n];
            }
            depthwise_bias_grad[c] = s;
        }
        /* plane b: the depthwise input gradient of plane a, through the expansion mask */
        for (n = 0; n < in_plane; ++n) {
            b[n] = 0.0f;
        }
        for (oy = 0; oy < d->out_h; ++oy) {
            const int32_t y0 = oy * d->stride_h - d->pad_top;
            const int32_t ky_begin = y0 < 0 ? -y0 : 0;
            const int32_t ky_end = d->in_h - y0 < d->kernel_h ? d->in_h - y0 : d->kernel_h;
            for (ox = 0; ox < d->out_w; ++ox) {
                const int32_t x0 = ox * d->stride_w - d->pad_left;
                const int32_t kx_begin = x0 < 0 ? -x0 : 0;
                const int32_t kx_end = d->in_w - x0 < d->kernel_w ? d->in_w - x0 : d->kernel_w;
                const float gs = a[oy * d->out_w + ox] * depthwise_scale[c];
                int32_t ky, kx;
                for (ky = ky_begin; ky < ky_end; ++ky) {
                    float *row = b + (y0 + ky) * d->in_w + x0;
                    const int8_t *w_row = wd + ky * d->kernel_w;
                    for (kx = kx_begin; kx < kx_end; ++kx) {
                        row[kx] += gs * (float)w_row[kx];
                    }
                }
            }
        }
        for (n = 0; n < in_plane; ++n) {
            b[n] = mt_nn_bit(expand_mask, n * C + c) ? b[n] : 0.0f;
        }
        if (expand_bias_grad != NULL) {
            float s = 0.0f;
            for (n = 0; n < in_plane; ++n) {
                s += b[n];
            }
            expand_bias_grad[c] = s;
        }
        /* channel c's share of the block input's gradient, with the old row c */
        if (grad_input != NULL) {
            for (n = 0; n < in_plane; ++n) {
                const float gs = b[n] * es;
                float *gi = grad_input + n * I;
                for (i = 0; i < I; ++i) {
                    gi[i] += gs * (float)we[i];
                }
            }
        }
        /* row c of the expansion weight gradient, applied at once */
        if (update != NULL) {
            const int32_t j = mt_nn_kept(update, c);
            const int32_t z = p->input_zero_point;
            mt_channels ch;
            float *acc = update->grad_row;
            if (j < 0) {
                continue;
            }
            for (i = 0; i < I; ++i) {
                acc[i] = 0.0f;
            }
            for (n = 0; n < in_plane; ++n) {
                const int8_t *x = input + n * I;
                for (i = 0; i < I; ++i) {
                    acc[i] += b[n] * (float)((int32_t)x[i] - z);
                }
            }
            for (i = 0; i < I; ++i) {
                acc[i] = acc[i] * p->input_scale;
            }
            ch.index = update->index;
            ch.count = update->count;
            ch.begin = j;
            ch.end = j + 1;
            if ((st = mt_sgd_update_s8(update->weights, update->weights_sliced, I, update->factor, acc, &ch,
                                       &update->u)) != MT_OK) {
                return st;
            }
        }
    }
    return MT_OK;
}
