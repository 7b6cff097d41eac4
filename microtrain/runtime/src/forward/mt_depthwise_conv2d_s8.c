/*
 * mt_depthwise_conv2d_s8: int8 depthwise CONV2D (groups == in_c == out_c, weights
 * [c][kh][kw][1]); the result equals mt_conv2d_s8 with those groups. Each output channel
 * reads one input channel, so the inner loop runs over the kernel window only.
 * Limits: kernel_h <= 16 (MT_ERR_PARAM otherwise).
 */
#include "mt_nn_dw.h"

/* Channel c of depthwise conv p, every output, in the reference's order: the window rows inside the
 * input (padded taps skipped), mt_nn_store_s8. */
static void mt_nn_dw_channel_ref_s8(const mt_conv_params *p, const mt_nn_store *s, const int8_t *input,
                                    const int8_t *weights, int32_t c, int8_t *output)
{
    const int32_t C = p->in_c, kw = p->kernel_w;
    const int8_t *w = weights + c * p->kernel_h * kw;
    int32_t oy, ox, ky;
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        const int32_t ky_begin = y0 < 0 ? -y0 : 0;
        const int32_t ky_end = p->in_h - y0 < p->kernel_h ? p->in_h - y0 : p->kernel_h;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            const int32_t kx_begin = x0 < 0 ? -x0 : 0;
            const int32_t kx_end = p->in_w - x0 < kw ? p->in_w - x0 : kw;
            int32_t acc = 0;
            for (ky = ky_begin; ky < ky_end; ++ky) {
                acc += mt_nn_dw_row_s8(input + ((y0 + ky) * p->in_w + x0 + kx_begin) * C + c, C, w + ky * kw + kx_begin,
                                       kx_end - kx_begin, p->input_zero_point);
            }
            output[(oy * p->out_w + ox) * C + c] = mt_nn_store_s8(acc, s, c);
        }
    }
}

/* Widest output row of the channel-innermost loop. */
#define MT_NN_DW_NHWC_OUT_W 16

#if MT_NN_DSP
/* Channels [c0, c0 + 4) of depthwise conv p over every output pixel, channel-innermost (NHWC): per
 * tap inside the input one word load of the four channels, two SXTAB16 (x - z in int16 lanes: bytes
 * 0, 2 and, rotated, 1, 3) and one SMLABB / SMLATT per channel on its doubled weight (packed once
 * into wp: 2 * kernel_h * kernel_w words, per tap (c0, c0 + 2) and (c0 + 1, c0 + 3) as int16 lanes),
 * the window rows in asm (mt_nn_dw4c_rows). Taps in the padding are skipped ((z - z) w = 0, as in the
 * reference), so a small map does only the taps inside (7x7 on a 4x4 map: at most 16 of the 49). The
 * accumulators start at bias2 and sum doubled products, u = bias2 + 2 sum (x - z) w, the operand of
 * SMMULR in the fast store (mt_nn_fast_out with raw 0, full a constant). Returns 0 (nothing written)
 * when a channel's constants do not qualify. */
static MT_NN_INLINE int mt_nn_dw_nhwc4_body_s8(const mt_conv_params *p, const mt_nn_store *s, const int8_t *input,
                                        const int8_t *weights, int32_t c0, int32_t *wp, int8_t *output,
                                        const int full)
{
    const int32_t C = p->in_c, K = p->kernel_h * p->kernel_w, kw = p->kernel_w, zo = p->output_zero_point;
    const int32_t lanes = mt_nn_lane_offset(p->input_zero_point), lo = p->act_min, hi = p->act_max;
    const int64_t bound = (int64_t)K * 32640;
    const int8_t *w = weights + c0 * K;
    mt_nn_fast_store f[4];
    int32_t xo[MT_NN_DW_NHWC_OUT_W], wo[MT_NN_DW_NHWC_OUT_W], nt[MT_NN_DW_NHWC_OUT_W];
    int32_t k, t, oy, ox;
    for (k = 0; k < 4; ++k) {
        if (!mt_nn_fast_store_of(s->bias != NULL ? s->bias[c0 + k] : 0, 0, s->multiplier[c0 + k], s->shift[c0 + k],
                                 bound, bound, &f[k]) &&
            !mt_nn_fast_const_of(s, c0 + k, bound, zo, &f[k])) {
            return 0;
        }
    }
    for (t = 0; t < K; ++t) {
        wp[2 * t] = mt_nn_pack16(2 * w[t], 2 * w[2 * K + t]);
        wp[2 * t + 1] = mt_nn_pack16(2 * w[K + t], 2 * w[3 * K + t]);
    }
    for (ox = 0; ox < p->out_w; ++ox) { /* per output column: the first tap inside and the taps inside */
        const int32_t x0 = ox * p->stride_w - p->pad_left;
        const int32_t kx_begin = x0 < 0 ? -x0 : 0;
        const int32_t kx_end = p->in_w - x0 < kw ? p->in_w - x0 : kw;
        xo[ox] = (x0 + kx_begin) * C;
        wo[ox] = 2 * kx_begin;
        nt[ox] = kx_end - kx_begin;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        const int32_t ky_begin = y0 < 0 ? -y0 : 0;
        const int32_t ky_end = p->in_h - y0 < p->kernel_h ? p->in_h - y0 : p->kernel_h;
        const int8_t *xr = input + (y0 + ky_begin) * p->in_w * C + c0;
        const int32_t *wr = wp + 2 * ky_begin * kw;
        int8_t *y = output + oy * p->out_w * C + c0;
        for (ox = 0; ox < p->out_w; ++ox, y += C) {
            int32_t a[4];
            a[0] = f[0].bias2;
            a[1] = f[1].bias2;
            a[2] = f[2].bias2;
            a[3] = f[3].bias2;
            if (ky_end > ky_begin && nt[ox] > 0) {
                mt_nn_dw4c_rows(xr + xo[ox], p->in_w * C, wr + wo[ox], 2 * kw, ky_end - ky_begin, nt[ox], C, lanes, a);
            }
            for (k = 0; k < 4; ++k) {
                y[k] = mt_nn_fast_out(0, a[k], f[k].multiplier, f[k].round, f[k].right, zo, lo, hi, full);
            }
        }
    }
    return 1;
}

#endif

/* Every channel of depthwise conv p channel-innermost: four at a time (mt_nn_dw_nhwc4_body_s8, full a
 * constant), the groups whose constants do not qualify and the last in_c % 4 channels by the reference
 * loop. wp: scratch for the packed weights. */
static MT_NN_NOINLINE void mt_nn_dw_nhwc_s8(const mt_conv_params *p, const mt_nn_store *s, const int8_t *input,
                                            const int8_t *weights, int32_t *wp, int8_t *output)
{
    int32_t c = 0, k;
#if MT_NN_DSP
    const int full = p->act_min == -128 && p->act_max == 127;
    for (; c + 4 <= p->in_c; c += 4) {
        if (full ? mt_nn_dw_nhwc4_body_s8(p, s, input, weights, c, wp, output, 1)
                 : mt_nn_dw_nhwc4_body_s8(p, s, input, weights, c, wp, output, 0)) {
            continue;
        }
        for (k = c; k < c + 4; ++k) {
            mt_nn_dw_channel_ref_s8(p, s, input, weights, k, output);
        }
    }
#else
    (void)wp;
#endif
    for (k = c; k < p->in_c; ++k) {
        mt_nn_dw_channel_ref_s8(p, s, input, weights, k, output);
    }
}

/* Whether the channel-innermost loop (mt_nn_dw_nhwc_s8) takes depthwise conv p: a 5x5 or larger window
 * over at most 16 outputs (4x4), where most taps fall in the padding (7x7 on 4x4: 33 of 49), which the
 * planar rows compute and this loop skips. Measured on the zoo models (benchmarks/kernel_profile.py
 * --by node): 7x7 on 4x4 0.40 -> 0.49 MAC/instruction, 5x5 on 4x4 0.26 -> 0.28; on 3x3 windows and
 * on 8x8 outputs the planar rows are faster (SMLAD on pairs of taps). */
static int mt_nn_dw_nhwc4_ok(const mt_conv_params *p)
{
    return MT_NN_DSP && 2 * 4 * p->kernel_h * p->kernel_w <= MT_NN_DW_PLANE_BYTES && p->kernel_w >= 5 &&
           p->out_h * p->out_w <= 16 && p->out_w <= MT_NN_DW_NHWC_OUT_W;
}

mt_status mt_depthwise_conv2d_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output)
{
    int32_t oy;
    int32_t buf[MT_NN_DW_PLANE_BYTES / 4]; /* a padded channel plane, or the packed weights of a channel group */
    mt_nn_store store;
    mt_status st;

    /* read params, check consistency */
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || input == NULL || weights == NULL ||
        output == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (p->groups != p->in_c || p->out_c != p->in_c) {
        return MT_ERR_SHAPE;
    }
    if ((st = mt_nn_check_act(p->input_zero_point, p->output_zero_point, p->act_min, p->act_max)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_quant(q->multiplier, q->shift, p->out_c)) != MT_OK) {
        return st;
    }
    /* Accumulator bound: kernel_h*kernel_w products of magnitude <= 255*128 (mt_nn.h). */
    if ((int64_t)p->kernel_h * p->kernel_w > MT_NN_MAX_DOT_LENGTH) {
        return MT_ERR_OVERFLOW;
    }

    if (p->kernel_h > MT_NN_IB_MAX_KERNEL) {
        return MT_ERR_PARAM;
    }

    store = mt_nn_store_of(bias, q, p);
    if (mt_nn_dw_nhwc4_ok(p)) { /* small maps: channel-innermost, four channels at a time */
        mt_nn_dw_nhwc_s8(p, &store, input, weights, buf, output);
        return MT_OK;
    }
    /* loops, channel-planar: each channel's input gathered into a padded plane (the zero point in
     * the padding, mt_nn_dw.h plane rows) on the stack, then its output rows (SMLAD on pairs of taps
     * where the channel's constants qualify, else the reference sums) */
    if (mt_nn_dw_plane_ok(p) && p->kernel_h <= MT_NN_DW_PLANE_KW_MAX &&
        (p->in_h + p->pad_top + p->pad_bottom) * (p->in_w + p->pad_left + p->pad_right) + 4 <= MT_NN_DW_PLANE_BYTES) {
        int8_t *plane = (int8_t *)(void *)buf;
        const int32_t seg = p->pad_left + p->in_w + p->pad_right, C = p->in_c, K = p->kernel_h * p->kernel_w;
        const int32_t rows = p->in_h + p->pad_top + p->pad_bottom;
        int32_t c;
#if MT_NN_DSP_ASM
        const int dw4 = mt_nn_dw4_ok(p, 0, p->kernel_h);
#endif
        memset(plane, (int)(int8_t)p->input_zero_point, (size_t)(rows * seg + 4));
        for (c = 0; c < C; ++c) {
            const int8_t *src = input + c;
            int8_t *dst = plane + p->pad_top * seg + p->pad_left;
            int32_t y, x;
            for (y = 0; y < p->in_h; ++y, dst += seg) {
                x = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                for (; x + 4 <= p->in_w; x += 4) { /* four pixels' bytes, one word store */
                    uint32_t v = (uint8_t)*src;
                    src += C;
                    v |= (uint32_t)(uint8_t)*src << 8;
                    src += C;
                    v |= (uint32_t)(uint8_t)*src << 16;
                    src += C;
                    v |= (uint32_t)(uint8_t)*src << 24;
                    src += C;
                    memcpy(dst + x, &v, sizeof v);
                }
#endif
                for (; x < p->in_w; ++x, src += C) {
                    dst[x] = *src;
                }
            }
            {
                const int8_t *prow[MT_NN_DW_PLANE_KW_MAX]; /* kernel_h <= 8 here: a shorter frame */
                int32_t ky;
                for (ky = 0; ky < p->kernel_h; ++ky) {
                    prow[ky] = plane + ky * seg;
                }
#if MT_NN_DSP_ASM
                if (dw4 && mt_nn_dw4_rows_s8(p, &store, c, prow, 0, p->kernel_h, p->out_h, p->stride_h * seg,
                                             weights + c * K, output + c, C, p->out_w * C, NULL)) {
                    continue; /* 5x5 / 7x7: straight to the four-output asm rows */
                }
#endif
                mt_nn_dw_plane_rows_s8(p, &store, c, prow, 0, p->kernel_h, p->out_h, p->stride_h * seg,
                                       weights + c * K, output + c, C, p->out_w * C);
            }
        }
        return MT_OK;
    }
    /* larger planes: one output row at a time in NHWC (mt_nn_dw_row_fast_s8: four channels at a
     * time, padded taps skipped) */
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        const int32_t ky_begin = y0 < 0 ? -y0 : 0;
        const int32_t ky_end = p->in_h - y0 < p->kernel_h ? p->in_h - y0 : p->kernel_h;
        const int8_t *rows[MT_NN_IB_MAX_KERNEL];
        int32_t ky;
        for (ky = ky_begin; ky < ky_end; ++ky) {
            rows[ky] = input + (y0 + ky) * p->in_w * p->in_c;
        }
        mt_nn_dw_row_fast_s8(p, &store, rows, ky_begin, ky_end, weights, output + oy * p->out_w * p->out_c);
    }
    return MT_OK;
}
