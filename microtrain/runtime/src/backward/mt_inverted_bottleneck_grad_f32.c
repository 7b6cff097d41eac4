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
#include "mt_nn_grad.h"

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

/* Element (y, x) of plane b in the gathering form below: its terms a[oy][ox] * w[ky][kx] over the
 * output pixels that read it, in ascending order from 0.0f, for oy in [oy_begin, oy_end) (the rows
 * that read input row y, found once per row). wf: the taps as floats. */
static inline float mt_nn_dw_gather(const mt_conv_params *d, const float *a, const float *wf, int32_t y, int32_t x,
                                    int32_t oy_begin, int32_t oy_end)
{
    const int32_t kw = d->kernel_w, sh = d->stride_h, sw = d->stride_w, ow = d->out_w;
    const int32_t vx = x + d->pad_left - kw + 1, tx = x + d->pad_left;
    const int32_t ox_begin = vx <= 0 ? 0 : sw == 1 ? vx : (vx + sw - 1) / sw;
    const int32_t ox_last = sw == 1 ? tx : tx / sw;
    const int32_t ox_end = ox_last + 1 < ow ? ox_last + 1 : ow;
    float s = 0.0f;
    int32_t oy, ox;
    for (oy = oy_begin; oy < oy_end; ++oy) {
        const float *ar = a + oy * ow;
        int32_t t = (y + d->pad_top - oy * sh) * kw + (tx - ox_begin * sw); /* the tap of ox_begin */
        for (ox = ox_begin; ox < ox_end; ++ox) {
            s = mt_nn_fmla(s, ar[ox], wf[t]);
            t -= sw;
        }
    }
    return s;
}

/* Plane b = the depthwise input gradient of plane a for channel c (scale ds, taps wd), written
 * gathering: each element of b sums its terms over the output pixels that read it, in ascending
 * order of the output pixel from 0.0f, which is exactly the sequence of float operations the
 * scattering form performs on it (mt_depthwise_conv2d_grad_input_f32: b zeroed, then each output
 * pixel in ascending order adds its terms), so every value is identical. a is scaled in place
 * first (a[o] * ds, the product the scattering form computes once per output pixel). */
static MT_NN_NOINLINE void mt_nn_depthwise_plane(const mt_conv_params *d, float *a, float ds, const int8_t *wd,
                                                 float *b)
{
    float wf[MT_NN_GRAD_CACHE];
    const int32_t taps = d->kernel_h * d->kernel_w, ow = d->out_w, w = d->in_w;
    const int32_t fast3 = d->kernel_h == 3 && d->kernel_w == 3 && d->stride_h == 1 && d->stride_w == 1 &&
                          d->pad_top == 1 && d->pad_left == 1 && d->out_h == d->in_h && ow == w;
    int32_t n, y, x, t;
    for (n = 0; n < d->out_h * ow; ++n) {
        a[n] = a[n] * ds;
    }
    for (t = 0; t < taps; ++t) {
        wf[t] = (float)wd[t]; /* exact; taps <= MT_NN_GRAD_CACHE (checked by the kernel) */
    }
#if MT_NN_VEC
    if (mt_nn_vec_dw_grad_plane(d, a, wf, b)) {
        return;
    }
#endif
    for (y = 0; y < d->in_h; ++y) {
        const int32_t sh = d->stride_h, vy = y + d->pad_top - d->kernel_h + 1, ty = y + d->pad_top;
        const int32_t oy_begin = vy <= 0 ? 0 : sh == 1 ? vy : (vy + sh - 1) / sh;
        const int32_t oy_last = sh == 1 ? ty : ty / sh;
        const int32_t oy_end = oy_last + 1 < d->out_h ? oy_last + 1 : d->out_h;
        float *row = b + y * w;
        x = 0;
        if (fast3 && y >= 1 && y + 1 < d->in_h && w >= 3) {
            /* 3x3, stride 1, inside: the nine terms, output pixels ascending = taps descending */
            const float w0 = wf[0], w1 = wf[1], w2 = wf[2], w3 = wf[3], w4 = wf[4], w5 = wf[5], w6 = wf[6],
                        w7 = wf[7], w8 = wf[8];
            row[0] = mt_nn_dw_gather(d, a, wf, y, 0, oy_begin, oy_end);
            for (x = 1; x + 1 < w; ++x) {
                const float *p0 = a + (y - 1) * ow + x - 1, *p1 = p0 + ow, *p2 = p1 + ow;
                float s = 0.0f;
                s = mt_nn_fmla(s, p0[0], w8);
                s = mt_nn_fmla(s, p0[1], w7);
                s = mt_nn_fmla(s, p0[2], w6);
                s = mt_nn_fmla(s, p1[0], w5);
                s = mt_nn_fmla(s, p1[1], w4);
                s = mt_nn_fmla(s, p1[2], w3);
                s = mt_nn_fmla(s, p2[0], w2);
                s = mt_nn_fmla(s, p2[1], w1);
                s = mt_nn_fmla(s, p2[2], w0);
                row[x] = s;
            }
        }
        for (; x < w; ++x) {
            row[x] = mt_nn_dw_gather(d, a, wf, y, x, oy_begin, oy_end);
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

/* Row j of the expansion weight gradient for channel c (plane bk): acc[i] = (sum over n ascending,
 * from 0.0f, of bk[n] * (float)(input[n][i] - z)) * input_scale, then mt_sgd_update_s8 of that row. */
static mt_status mt_nn_kept_row(const mt_inverted_bottleneck_grad_params *p, const mt_expand_update *update, int32_t j,
                                const float *bk, int32_t in_plane, const int8_t *input)
{
    const int32_t I = p->expand_in_c, z = p->input_zero_point;
    float *acc = update->grad_row;
    mt_channels ch;
    int32_t n, i;
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
            s = mt_nn_fmla(s, g0, (float)((int32_t)x0[i] - z));
            s = mt_nn_fmla(s, g1, (float)((int32_t)x1[i] - z));
            s = mt_nn_fmla(s, g2, (float)((int32_t)x2[i] - z));
            s = mt_nn_fmla(s, g3, (float)((int32_t)x3[i] - z));
            acc[i] = s;
        }
    }
    for (; n < in_plane; ++n) {
        const int8_t *x = input + n * I;
        for (i = 0; i < I; ++i) {
            acc[i] = mt_nn_fmla(acc[i], bk[n], (float)((int32_t)x[i] - z));
        }
    }
    for (i = 0; i < I; ++i) {
        acc[i] = acc[i] * p->input_scale;
    }
    ch.index = update->index;
    ch.count = update->count;
    ch.begin = j;
    ch.end = j + 1;
    return mt_sgd_update_s8(update->weights, update->weights_sliced, I, update->factor, acc, &ch, &update->u);
}

/* nk (2 to 4, a constant at each call) rows at once: row q, element i = (sum over n ascending, from
 * 0.0f, of b[q][n] * (float)(input[n][i] - z)) * scale into room[q * I + i]; each (input - z) is
 * converted once for all nk rows, and elements i, i + 1 go together (each keeps its own sum, in
 * the same order). */
static MT_NN_GRAD_ALWAYS void mt_nn_kept_sums(const float *const *b, int32_t in_plane, const int8_t *input,
                                              int32_t I, int32_t z, float scale, float *room, const int nk)
{
    int32_t i = 0, n, q;
#if MT_NN_VEC
    i = mt_nn_vec_kept_sums(b, in_plane, input, I, z, scale, room, nk);
#endif
    for (; i + 2 <= I; i += 2) { /* two input channels at a time share each b[q][n] load */
        float s[MT_NN_IB_BLOCK] = {0.0f, 0.0f, 0.0f, 0.0f}, t[MT_NN_IB_BLOCK] = {0.0f, 0.0f, 0.0f, 0.0f};
        const int8_t *x = input + i;
        for (n = 0; n < in_plane; ++n) {
            const float xf = (float)((int32_t)x[n * I] - z), xg = (float)((int32_t)x[n * I + 1] - z);
            MT_NN_GRAD_UNROLL
            for (q = 0; q < nk; ++q) {
                const float bq = b[q][n];
                s[q] = mt_nn_fmla(s[q], bq, xf);
                t[q] = mt_nn_fmla(t[q], bq, xg);
            }
        }
        MT_NN_GRAD_UNROLL
        for (q = 0; q < nk; ++q) {
            room[q * I + i] = s[q] * scale;
            room[q * I + i + 1] = t[q] * scale;
        }
    }
    for (; i < I; ++i) {
        float s[MT_NN_IB_BLOCK] = {0.0f, 0.0f, 0.0f, 0.0f};
        const int8_t *x = input + i;
        for (n = 0; n < in_plane; ++n) {
            const float xf = (float)((int32_t)x[n * I] - z);
            MT_NN_GRAD_UNROLL
            for (q = 0; q < nk; ++q) {
                s[q] = mt_nn_fmla(s[q], b[q][n], xf);
            }
        }
        MT_NN_GRAD_UNROLL
        for (q = 0; q < nk; ++q) {
            room[q * I + i] = s[q] * scale;
        }
    }
}

/* The kept rows among channels c0 .. c0 + nb - 1 (planes b). When their rows fit the free planes a
 * (room floats; the a planes are dead once the b planes exist), the rows are summed together, so
 * each (input[n][i] - z) is converted once for all of them: row q, element i, is still the sum over
 * n ascending from 0.0f of b_q[n] * x, the expression and order of mt_nn_kept_row. Then each row
 * is scaled and applied in channel order (rows of distinct channels are independent, and the
 * update's rounding depends only on the element's index). */
static mt_status mt_nn_kept_rows(const mt_inverted_bottleneck_grad_params *p, const mt_expand_update *update,
                                 int32_t c0, int32_t nb, const float *b, int32_t in_plane, const int8_t *input,
                                 float *room, int32_t room_floats)
{
    const int32_t I = p->expand_in_c, z = p->input_zero_point;
    int32_t jk[MT_NN_IB_BLOCK], kk[MT_NN_IB_BLOCK], nk = 0, k, q;
    mt_status st;
    for (k = 0; k < nb; ++k) {
        const int32_t j = mt_nn_kept(update, c0 + k);
        if (j >= 0) {
            jk[nk] = j;
            kk[nk++] = k;
        }
    }
    if (nk == 0) {
        return MT_OK;
    }
    if (nk == 1 || nk * I > room_floats) {
        for (q = 0; q < nk; ++q) {
            if ((st = mt_nn_kept_row(p, update, jk[q], b + kk[q] * in_plane, in_plane, input)) != MT_OK) {
                return st;
            }
        }
        return MT_OK;
    }
    {
        const float *bq[MT_NN_IB_BLOCK];
        for (q = 0; q < nk; ++q) {
            bq[q] = b + kk[q] * in_plane;
        }
        switch (nk) {
        case 2:
            mt_nn_kept_sums(bq, in_plane, input, I, z, p->input_scale, room, 2);
            break;
        case 3:
            mt_nn_kept_sums(bq, in_plane, input, I, z, p->input_scale, room, 3);
            break;
        default:
            mt_nn_kept_sums(bq, in_plane, input, I, z, p->input_scale, room, 4);
            break;
        }
    }
    for (q = 0; q < nk; ++q) {
        mt_channels ch;
        ch.index = update->index;
        ch.count = update->count;
        ch.begin = jk[q];
        ch.end = jk[q] + 1;
        if ((st = mt_sgd_update_s8(update->weights, update->weights_sliced, I, update->factor, room + q * I, &ch,
                                   &update->u)) != MT_OK) {
            return st;
        }
    }
    return MT_OK;
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
    int32_t c0, n, i, k, C, O, I, B, out_plane, in_plane, a_floats;
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
    if (B < 1 || B > MT_NN_IB_BLOCK || d->kernel_h * d->kernel_w > MT_NN_GRAD_CACHE) {
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
    a_floats = out_plane > I ? out_plane : I; /* the scratch layout of mt_inverted_bottleneck_grad_get_buffer_size */
    if (grad_input != NULL) {
        for (i = 0; i < in_plane * I; ++i) {
            grad_input[i] = 0.0f;
        }
    }
    for (c0 = 0; c0 < C; c0 += B) {
        const int32_t nb = C - c0 < B ? C - c0 : B;
        float *a = scratch;                   /* [nb][out_plane], then the kept rows [nk][I] */
        float *b = scratch + B * a_floats;    /* [nb][in_plane] */
        const int8_t *we[MT_NN_IB_BLOCK];
        /* planes a: columns c0.. of the projection's input gradient, through the depthwise mask */
        mt_nn_grad_columns(grad_output, O, project_scale, project_weights + c0, C, out_plane, a, out_plane, nb);
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
            mt_nn_grad_rows(b, in_plane, expand_scale + c0, we, I, in_plane, grad_input, nb);
        }
        /* the kept rows of the expansion weight gradient, each applied at once (after the group's
         * share of grad_input read the old rows) */
        if (update != NULL &&
            (st = mt_nn_kept_rows(p, update, c0, nb, b, in_plane, input, a, B * a_floats)) != MT_OK) {
            return st;
        }
    }
    return MT_OK;
}
