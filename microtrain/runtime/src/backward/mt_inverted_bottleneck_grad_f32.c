/*
 * mt_inverted_bottleneck_grad_f32: the backward through expand 1x1 -> depthwise -> project 1x1,
 * a few expanded channels at a time (compiler/stream_block_grads.py).
 *
 * The depthwise conv keeps channels apart, so everything between the projection's output
 * gradient and the expansion's input gradient splits by expanded channel c: plane a (column c
 * of the projection's input gradient, masked) and plane b (its depthwise input gradient,
 * masked) are all that exists of the expanded gradients, instead of two whole H x W x C
 * tensors. Channels go in groups of p->channels_per_pass (1 to 4; the scratch holds that many
 * planes of each kind); with 4 the two 1x1 stages keep four running sums in registers, as the
 * pointwise kernels do. Every value is the same float32
 * expression, summed over the same index in the same order, as in the unfused kernels
 * (mt_runtime.h spells out each), hence bit-exact with them:
 *   - a[n]: o ascending from 0.0f, as mt_pointwise_conv2d_grad_input_f32 sums for element c;
 *   - b: each element receives its terms output pixels ascending, as in
 *     mt_depthwise_conv2d_grad_input_f32 (each output pixel adds at most once to an element);
 *   - bias gradients: positions ascending from 0.0f (mt_bias_grad_f32);
 *   - grad_input[n][i]: zeroed, then one term per channel, c ascending, which is the order in
 *     which mt_pointwise_conv2d_grad_input_f32 adds its output channels;
 *   - a kept row of the expansion weight gradient: pixels ascending from 0.0f (four per pass, as
 *     mt_pointwise_conv2d_grad_weight_f32 adds them), times the input scale, then mt_sgd_update_s8 on that row alone.
 * Expansion rows of a group are read for grad_input before they are updated, and never again.
 */
#include "mt_nn.h"

#define MT_NN_IB_BLOCK 4

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

/* Plane b = the depthwise input gradient of plane a for channel c (scale ds, taps wd). */
static void mt_nn_depthwise_plane(const mt_conv_params *d, const float *a, float ds, const int8_t *wd, float *b)
{
    int32_t n, oy, ox;
    for (n = 0; n < d->in_h * d->in_w; ++n) {
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
            const float gs = a[oy * d->out_w + ox] * ds;
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
}

/* Sum of a plane, positions ascending from 0.0f (mt_bias_grad_f32). */
static float mt_nn_plane_sum(const float *x, int32_t n)
{
    float s = 0.0f;
    int32_t k;
    for (k = 0; k < n; ++k) {
        s += x[k];
    }
    return s;
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
    int32_t c0, n, i, k, C, O, I, B, out_plane, in_plane;
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
    B = p->channels_per_pass;
    if (B < 1 || B > MT_NN_IB_BLOCK) {
        return MT_ERR_PARAM;
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
    if (grad_input != NULL) {
        for (i = 0; i < in_plane * I; ++i) {
            grad_input[i] = 0.0f;
        }
    }
    for (c0 = 0; c0 < C; c0 += B) {
        const int32_t nb = C - c0 < B ? C - c0 : B;
        float *a = scratch;                  /* [nb][out_plane] */
        float *b = scratch + B * out_plane;  /* [nb][in_plane] */
        const int8_t *we[MT_NN_IB_BLOCK];
        /* planes a: columns c0.. of the projection's input gradient, through the depthwise mask */
        for (n = 0; n < out_plane; ++n) {
            const float *g = grad_output + n * O;
            const int8_t *wp = project_weights + c0;
            int32_t o;
            if (nb == MT_NN_IB_BLOCK) {
                float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
                for (o = 0; o < O; ++o) {
                    const float gs = g[o] * project_scale[o];
                    const int8_t *w = wp + o * C;
                    s0 = s0 + gs * (float)w[0];
                    s1 = s1 + gs * (float)w[1];
                    s2 = s2 + gs * (float)w[2];
                    s3 = s3 + gs * (float)w[3];
                }
                a[n] = s0;
                a[out_plane + n] = s1;
                a[2 * out_plane + n] = s2;
                a[3 * out_plane + n] = s3;
            } else {
                for (k = 0; k < nb; ++k) {
                    float s = 0.0f;
                    for (o = 0; o < O; ++o) {
                        s = s + (g[o] * project_scale[o]) * (float)wp[o * C + k];
                    }
                    a[k * out_plane + n] = s;
                }
            }
        }
        for (k = 0; k < nb; ++k) {
            const int32_t c = c0 + k;
            float *ak = a + k * out_plane;
            float *bk = b + k * in_plane;
            for (n = 0; n < out_plane; ++n) {
                ak[n] = mt_nn_bit(depthwise_mask, n * C + c) ? ak[n] : 0.0f;
            }
            if (depthwise_bias_grad != NULL) {
                depthwise_bias_grad[c] = mt_nn_plane_sum(ak, out_plane);
            }
            /* plane b: the depthwise input gradient of plane a, through the expansion mask */
            mt_nn_depthwise_plane(d, ak, depthwise_scale[c], depthwise_weights + c * d->kernel_h * d->kernel_w, bk);
            for (n = 0; n < in_plane; ++n) {
                bk[n] = mt_nn_bit(expand_mask, n * C + c) ? bk[n] : 0.0f;
            }
            if (expand_bias_grad != NULL) {
                expand_bias_grad[c] = mt_nn_plane_sum(bk, in_plane);
            }
            we[k] = expand_rows != NULL ? expand_rows[c] : expand_weights + c * I;
        }
        /* the group's share of the block input's gradient, with the old rows, c ascending */
        if (grad_input != NULL) {
            for (n = 0; n < in_plane; ++n) {
                float *gi = grad_input + n * I;
                if (nb == MT_NN_IB_BLOCK) {
                    const float gs0 = b[n] * expand_scale[c0];
                    const float gs1 = b[in_plane + n] * expand_scale[c0 + 1];
                    const float gs2 = b[2 * in_plane + n] * expand_scale[c0 + 2];
                    const float gs3 = b[3 * in_plane + n] * expand_scale[c0 + 3];
                    for (i = 0; i < I; ++i) {
                        float s = gi[i];
                        s = s + gs0 * (float)we[0][i];
                        s = s + gs1 * (float)we[1][i];
                        s = s + gs2 * (float)we[2][i];
                        s = s + gs3 * (float)we[3][i];
                        gi[i] = s;
                    }
                } else {
                    for (k = 0; k < nb; ++k) {
                        const float gs = b[k * in_plane + n] * expand_scale[c0 + k];
                        for (i = 0; i < I; ++i) {
                            gi[i] += gs * (float)we[k][i];
                        }
                    }
                }
            }
        }
        /* the kept rows of the expansion weight gradient, each applied at once */
        for (k = 0; update != NULL && k < nb; ++k) {
            const int32_t j = mt_nn_kept(update, c0 + k);
            const int32_t z = p->input_zero_point;
            const float *bk = b + k * in_plane;
            float *acc = update->grad_row;
            mt_channels ch;
            if (j < 0) {
                continue;
            }
            for (i = 0; i < I; ++i) {
                acc[i] = 0.0f;
            }
            for (n = 0; n + 4 <= in_plane; n += 4) {
                const float g0 = bk[n], g1 = bk[n + 1], g2 = bk[n + 2], g3 = bk[n + 3];
                const int8_t *x0 = input + n * I;
                const int8_t *x1 = x0 + I;
                const int8_t *x2 = x1 + I;
                const int8_t *x3 = x2 + I;
                for (i = 0; i < I; ++i) {
                    float s = acc[i];
                    s = s + g0 * (float)((int32_t)x0[i] - z);
                    s = s + g1 * (float)((int32_t)x1[i] - z);
                    s = s + g2 * (float)((int32_t)x2[i] - z);
                    s = s + g3 * (float)((int32_t)x3[i] - z);
                    acc[i] = s;
                }
            }
            for (; n < in_plane; ++n) {
                const int8_t *x = input + n * I;
                for (i = 0; i < I; ++i) {
                    acc[i] += bk[n] * (float)((int32_t)x[i] - z);
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
