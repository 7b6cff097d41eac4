/*
 * mt_nn_ib.h: the row engine of the fused inverted-bottleneck kernels (mt_inverted_bottleneck_s8,
 * mt_inverted_bottleneck_stream_s8), internal, static inline.
 *
 *     [expand CONV2D, groups 1] -> depthwise CONV2D -> 1x1 CONV2D [-> ADD(input)]
 *
 * Per depthwise output row: (1) the expanded rows it still needs, each computed once, into a
 * ring of min(kernel_h, in_h) rows stored channel-planar with the depthwise padding (plane rows
 * of mt_nn_dw.h: pad_left + in_w + pad_right bytes per channel, the padding holding the zero
 * point); (2) the depthwise output row, every channel, into one NHWC row; (3) its projection, a
 * 1x1 conv over the row's pixels, straight into the output row, or (4) with a residual into one
 * row that the ADD then combines with the block input's row. Without an expansion the
 * depthwise reads the block input (NHWC) directly. Every element is the same integer sum with
 * the same requantization as the reference kernels (mt_nn_fast.h, mt_nn_dw.h), so the block is
 * bit-exact with running its ops one after the other.
 *
 * Scratch layout (mt_nn_ib_layout; mt_inverted_bottleneck_get_buffer_size returns its total,
 * Python twin ir/buffer_sizes.py inverted_bottleneck_get_buffer_size), in bytes:
 *   wbuf   4 * max(e, pj): the pre-extended weight rows of a channel pair (mt_nn_fast.h), e = the
 *          expansion's row length rounded to 4 (in_c rounded down for a 1x1, the window rounded
 *          up for a patched conv, 0 otherwise), pj = in_c of the projection rounded down to 4
 *   ring   rows * in_c * (pad_left + in_w + pad_right) + 4 (with an expansion)
 *   patch  min(expand out_w, MT_NN_IB_STRIP) * window rounded up to 4 (a conv expansion whose
 *          window fits MT_NN_PATCH_MAX: the receptive fields of a strip of output pixels, each
 *          padded to a word)
 *   dw     min(out_w, MT_NN_IB_STRIP) * in_c (a strip of the depthwise output row)
 *   pr     min(out_w, MT_NN_IB_STRIP) * out_c (a strip of the projection output, with a residual)
 * The output row is computed in strips of MT_NN_IB_STRIP pixels (depthwise, projection, ADD).
 */
#ifndef MT_NN_IB_H
#define MT_NN_IB_H

#include "mt_nn_dw.h"

/* Output pixels per strip: of the depthwise output row (depthwise, projection, ADD) and of a
 * small-window expansion conv (the 3x3 RGB first conv: the strip's receptive fields gathered, then
 * one 1x1 conv over window-long rows). */
#define MT_NN_IB_STRIP 32

/* Byte offsets of the scratch regions (layout above); total = the scratch size. */
typedef struct {
    int32_t wbuf_words, ring, patch, dw, pr, total;
} mt_nn_ib_layout_t;

static inline int32_t mt_nn_ib_min(int32_t a, int32_t b)
{
    return a < b ? a : b;
}

/* Whether conv e is a 1x1 over whole rows (the expansion of a MobileNet block). */
static inline int mt_nn_ib_is_1x1(const mt_conv_params *e)
{
    return e->kernel_h == 1 && e->kernel_w == 1 && e->stride_w == 1 && e->pad_left == 0 && e->pad_right == 0 &&
           e->pad_top == 0;
}

static inline mt_nn_ib_layout_t mt_nn_ib_layout(const mt_inverted_bottleneck_params *p)
{
    const mt_conv_params *e = &p->expand, *d = &p->depthwise;
    const int32_t window = e->kernel_h * e->kernel_w * e->in_c;
    const int32_t patched = p->has_expand && !mt_nn_ib_is_1x1(e) && window <= MT_NN_PATCH_MAX;
    const int32_t e4 = !p->has_expand ? 0 : mt_nn_ib_is_1x1(e) ? e->in_c & ~3 : patched ? (window + 3) & ~3 : 0;
    const int32_t pj4 = p->project.in_c & ~3, strip = mt_nn_ib_min(d->out_w, MT_NN_IB_STRIP);
    mt_nn_ib_layout_t l;
    l.wbuf_words = e4 > pj4 ? e4 : pj4;
    l.ring = 4 * l.wbuf_words;
    l.patch = l.ring + (p->has_expand ? mt_nn_ib_min(d->kernel_h, d->in_h) * d->in_c *
                                                (d->pad_left + d->in_w + d->pad_right) + 4
                                      : 0);
    l.dw = l.patch + (patched ? mt_nn_ib_min(e->out_w, MT_NN_IB_STRIP) * ((window + 3) & ~3) : 0);
    l.pr = l.dw + strip * d->in_c;
    l.total = l.pr + (p->has_residual ? strip * p->project.out_c : 0);
    return l;
}

/* Bytes of one plane row of depthwise conv d in the ring. */
static inline int32_t mt_nn_ib_seg(const mt_conv_params *d)
{
    return d->pad_left + d->in_w + d->pad_right;
}

/* Output row r of conv e (groups 1) into dst (pixel ox, channel c at dst[ox * y_stride + c * y_cstride]);
 * input row y at src + (y % rows_held) * in_w * in_c (a whole tensor: rows_held = in_h). */
static MT_NN_NOINLINE void mt_nn_ib_conv_row_s8(const mt_conv_params *e, const mt_per_channel_quant *q,
                                                const int8_t *src, int32_t rows_held, const int8_t *weights,
                                                const int32_t *bias, int32_t r, int8_t *dst, int32_t y_stride,
                                                int32_t y_cstride, int8_t *strip, int32_t *wbuf, int32_t wbuf_words)
{
    const int32_t y0 = r * e->stride_h - e->pad_top;
    const int32_t ky_begin = y0 < 0 ? -y0 : 0;
    const int32_t ky_end = e->in_h - y0 < e->kernel_h ? e->in_h - y0 : e->kernel_h;
    const int32_t window = e->kernel_h * e->kernel_w * e->in_c; /* weights per output channel */
    const int32_t in_row = e->in_w * e->in_c;
    const int8_t *row[MT_NN_IB_MAX_KERNEL];
    int32_t ox, oc, ky;
    if (mt_nn_ib_is_1x1(e)) { /* input row y0 itself */
        mt_nn_pointwise_fast_s8(e, q, src + ((y0 % rows_held) * in_row), e->in_c, e->out_w, weights, NULL, bias,
                                dst, y_stride, y_cstride, wbuf, wbuf_words);
        return;
    }
    for (ky = ky_begin; ky < ky_end; ++ky) {
        row[ky] = src + ((y0 + ky) % rows_held) * in_row;
    }
    if (window <= MT_NN_PATCH_MAX) {
        /* strips of patches (padding = the zero point), each strip one 1x1 conv of window-long rows */
        const int32_t per_strip = MT_NN_IB_STRIP, window4 = (window + 3) & ~3; /* patches padded to 4 bytes */
        mt_conv_params as_1x1 = *e;
        as_1x1.in_c = window;
        for (ox = 0; ox < e->out_w; ox += per_strip) {
            const int32_t n = e->out_w - ox < per_strip ? e->out_w - ox : per_strip;
            int32_t k;
            for (k = 0; k < n; ++k) {
                const int32_t x0 = (ox + k) * e->stride_w - e->pad_left;
                const int32_t kx_begin = x0 < 0 ? -x0 : 0;
                const int32_t kx_end = e->in_w - x0 < e->kernel_w ? e->in_w - x0 : e->kernel_w;
                mt_nn_patch_s8(strip + k * window4, row, ky_begin, ky_end, kx_begin, kx_end, x0, e);
            }
            mt_nn_pointwise_fast_s8(&as_1x1, q, strip, window4, n, weights, NULL, bias, dst + ox * y_stride, y_stride,
                                    y_cstride, wbuf, wbuf_words);
        }
        return;
    }
    {
        const mt_nn_store s = mt_nn_store_of(bias, q, e);
        for (ox = 0; ox < e->out_w; ++ox) {
            const int32_t x0 = ox * e->stride_w - e->pad_left;
            const int32_t kx_begin = x0 < 0 ? -x0 : 0;
            const int32_t kx_end = e->in_w - x0 < e->kernel_w ? e->in_w - x0 : e->kernel_w;
            /* output channels in pairs (mt_nn_dot2_s8: each input word feeds both), an odd last one alone */
            for (oc = 0; oc < e->out_c; oc += 2) {
                const int32_t pair = e->out_c - oc > 1;
                const int8_t *w = weights + (int32_t)oc * window;
                int32_t acc[2] = {0, 0};
                for (ky = ky_begin; ky < ky_end; ++ky) { /* the window row inside the input: contiguous */
                    const int8_t *x = row[ky] + (x0 + kx_begin) * e->in_c;
                    const int8_t *wk = w + (ky * e->kernel_w + kx_begin) * e->in_c;
                    if (pair) {
                        mt_nn_dot2_s8(x, wk, wk + window, (kx_end - kx_begin) * e->in_c, e->input_zero_point, acc);
                    } else {
                        acc[0] += mt_nn_dot_s8(x, wk, (kx_end - kx_begin) * e->in_c, e->input_zero_point);
                    }
                }
                dst[ox * y_stride + oc * y_cstride] = mt_nn_store_s8(acc[0], &s, oc);
                if (pair) {
                    dst[ox * y_stride + (oc + 1) * y_cstride] = mt_nn_store_s8(acc[1], &s, oc + 1);
                }
            }
        }
    }
}

/* The ADD of one row: y[i] = ADD(a[i], b[i]) with mt_add_s8's arithmetic. */
static inline void mt_nn_ib_add_row(const mt_add_params *a, const int8_t *x, const int8_t *z, int8_t *y, int32_t n)
{
    int32_t i;
    if (mt_nn_add_fast_s8(a, x, z, y, n)) {
        return;
    }
    for (i = 0; i < n; ++i) {
        const int32_t sa = ((int32_t)x[i] - a->a_zero_point) * ((int32_t)1 << a->left_shift);
        const int32_t sb = ((int32_t)z[i] - a->b_zero_point) * ((int32_t)1 << a->left_shift);
        const int32_t total = mt_nn_sat_add_s32(mt_requantize(sa, a->a_multiplier, a->a_shift),
                                                mt_requantize(sb, a->b_multiplier, a->b_shift));
        y[i] = mt_nn_offset_clamp(mt_requantize(total, a->output_multiplier, a->output_shift), a->output_zero_point,
                                  a->act_min, a->act_max);
    }
}

/* The whole block (parameters checked by the caller). Input rows come from `input` (the whole
 * tensor), or, when read_rows is not NULL (a block with an expansion and no residual), are pulled
 * in order into input_ring, min(expand kernel_h, in_h) rows, each row exactly once. */
static inline void mt_nn_ib_run(const mt_inverted_bottleneck_params *p, const int8_t *input, mt_read_rows_fn read_rows,
                                void *ctx, int8_t *input_ring, const int8_t *expand_weights,
                                const int32_t *expand_bias, const int8_t *depthwise_weights,
                                const int32_t *depthwise_bias, const int8_t *project_weights,
                                const int32_t *project_bias, int8_t *output, int8_t *scratch)
{
    const mt_conv_params *e = &p->expand, *d = &p->depthwise, *pr = &p->project;
    const mt_nn_ib_layout_t lay = mt_nn_ib_layout(p);
    const int32_t C = d->in_c, K = d->kernel_h * d->kernel_w, seg = mt_nn_ib_seg(d);
    const int32_t rows = d->kernel_h < d->in_h ? d->kernel_h : d->in_h;
    const int32_t plane = C * seg; /* one ring row */
    const int32_t out_row = pr->out_w * pr->out_c, out_c = pr->out_c;
    const int32_t in_rows = read_rows != NULL ? (e->kernel_h < e->in_h ? e->kernel_h : e->in_h) : e->in_h;
    int32_t *wbuf = (int32_t *)(void *)scratch; /* the scratch starts 4-byte aligned */
    int8_t *ring = scratch + lay.ring, *patch = scratch + lay.patch, *dw = scratch + lay.dw, *prs = scratch + lay.pr;
    const mt_nn_store dw_store = mt_nn_store_of(depthwise_bias, &p->depthwise_q, d);
    const int8_t *e_src = read_rows != NULL ? input_ring : input;
    int32_t next = 0, loaded = 0, oy, ky, c, k, ox0;

    if (p->has_expand) { /* the ring's padding columns hold the zero point, once for all rows */
        for (k = 0; k < rows * C; ++k) {
            memset(ring + k * seg, (int)(int8_t)d->input_zero_point, (size_t)d->pad_left);
            memset(ring + k * seg + d->pad_left + d->in_w, (int)(int8_t)d->input_zero_point, (size_t)d->pad_right);
        }
        memset(ring + rows * plane, 0, 4); /* the slack the last plane row's word loads may read */
    }
    for (oy = 0; oy < d->out_h; ++oy) {
        const int32_t y0 = oy * d->stride_h - d->pad_top;
        const int32_t ky_begin = y0 < 0 ? -y0 : 0;
        const int32_t ky_end = d->in_h - y0 < d->kernel_h ? d->in_h - y0 : d->kernel_h;
        const int8_t *src_row[MT_NN_IB_MAX_KERNEL];
        int8_t *y = output + oy * out_row;
        /* (1) the expanded rows this output row still needs, into ring slot next % rows */
        for (; p->has_expand && next < y0 + ky_end; ++next) {
            if (read_rows != NULL) {
                const int32_t e0 = next * e->stride_h - e->pad_top;
                const int32_t need = e0 + e->kernel_h < e->in_h ? e0 + e->kernel_h : e->in_h;
                for (; loaded < need; ++loaded) { /* expanded rows go up, so their input windows do too */
                    read_rows(input_ring + (loaded % in_rows) * e->in_w * e->in_c, loaded, 1, ctx);
                }
            }
            mt_nn_ib_conv_row_s8(e, &p->expand_q, e_src, in_rows, expand_weights, expand_bias, next,
                                 ring + (next % rows) * plane + d->pad_left, 1, seg, patch, wbuf, lay.wbuf_words);
        }
        for (ox0 = 0; ox0 < d->out_w; ox0 += MT_NN_IB_STRIP) {
            /* (2) a strip of the depthwise output row: d with out_w = the strip, shifted ox0 columns */
            mt_conv_params ds = *d;
            ds.out_w = mt_nn_ib_min(d->out_w - ox0, MT_NN_IB_STRIP);
            if (p->has_expand) { /* channel c's window rows: plane rows c * seg bytes on */
                for (ky = ky_begin; ky < ky_end; ++ky) {
                    src_row[ky] = ring + ((y0 + ky) % rows) * plane + ox0 * d->stride_w;
                }
                for (c = 0; c < C;) {
                    /* runs of channels with the pack's asm rows ([c, stop)), the others one by one */
#if MT_NN_DSP_ASM
                    const int32_t stop = mt_nn_dw_plane_channels_s8(&ds, &dw_store, src_row, seg, ky_begin, ky_end,
                                                                    depthwise_weights, dw, c);
#else
                    const int32_t stop = -1;
#endif
                    const int32_t to = stop < 0 ? C : stop + 1;
                    for (c = stop < 0 ? c : stop; c < to && c < C; ++c) {
                        for (ky = ky_begin; ky < ky_end; ++ky) {
                            src_row[ky] += c * seg;
                        }
                        mt_nn_dw_plane_rows_s8(&ds, &dw_store, c, src_row, ky_begin, ky_end, 1, 0,
                                               depthwise_weights + c * K, dw + c, C, 0);
                        for (ky = ky_begin; ky < ky_end; ++ky) {
                            src_row[ky] -= c * seg;
                        }
                    }
                }
            } else {
                ds.pad_left = d->pad_left - ox0 * d->stride_w;
                for (ky = ky_begin; ky < ky_end; ++ky) {
                    src_row[ky] = input + (y0 + ky) * d->in_w * C;
                }
                mt_nn_dw_row_fast_s8(&ds, &dw_store, src_row, ky_begin, ky_end, depthwise_weights, dw);
            }
            /* (3) its projection; (4) the residual ADD with the block input, read before the (possibly
             * aliased) output is written, element by element */
            mt_nn_pointwise_fast_s8(pr, &p->project_q, dw, C, ds.out_w, project_weights, NULL, project_bias,
                                    p->has_residual ? prs : y + ox0 * out_c, out_c, 1, wbuf, lay.wbuf_words);
            if (p->has_residual) {
                const int8_t *sc = input + oy * out_row + ox0 * out_c;
                if (p->shortcut_first) {
                    mt_nn_ib_add_row(&p->add, sc, prs, y + ox0 * out_c, ds.out_w * out_c);
                } else {
                    mt_nn_ib_add_row(&p->add, prs, sc, y + ox0 * out_c, ds.out_w * out_c);
                }
            }
        }
    }
}

#endif /* MT_NN_IB_H */
