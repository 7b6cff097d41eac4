/*
 * mt_inverted_bottleneck_s8: a frozen inverted-bottleneck block, row-streamed, bit-exact
 * with running its ops one after the other (ir/fused_blocks.py defines it that way):
 *
 *     [expand CONV2D, groups 1, any kernel] -> depthwise CONV2D -> 1x1 CONV2D [-> ADD(input)]
 *
 * Instead of materialising the expanded tensor (e.g. 64x64x48) and the depthwise output,
 * the kernel keeps a ring of min(kernel_h, in_h) expanded rows in the scratch buffer:
 * before each depthwise output row it computes the expanded rows that row still needs
 * (each expanded row exactly once), then per output pixel the depthwise result for all
 * channels (one pixel of scratch), its projection, and the residual ADD, and stores the
 * block output. Every element goes through the same int32 sum, the same saturating bias
 * add and the same mt_requantize call as in mt_conv2d_s8 / mt_depthwise_conv2d_s8 /
 * mt_pointwise_conv2d_s8 / mt_add_s8, so the result is identical; integer sums are exact,
 * so the loop order does not matter (the accumulator bounds are checked below).
 *
 * Limits: depthwise kernel_h <= 16 (MT_ERR_PARAM otherwise).
 * Scratch: as many bytes as mt_inverted_bottleneck_get_buffer_size returns; it may not overlap input or
 * output. The output may be the input itself (same pointer) when the output is no larger
 * than the input and no later row reads input bytes an earlier output row
 * overwrites (checked here; MT_ERR_PARAM otherwise; Python twin
 * compiler/inplace.py).
 */
#include "mt_nn.h"

/* The first input row read by the rest of the block once output row oy is written
 * (in_h when none): the input aliasing rule of the header comment. */
static int32_t mt_nn_ib_next_input_row(const mt_inverted_bottleneck_params *p, int32_t oy)
{
    const mt_conv_params *d = &p->depthwise;
    int32_t hi = oy * d->stride_h - d->pad_top + d->kernel_h - 1;
    int32_t first;
    if (hi > d->in_h - 1) {
        hi = d->in_h - 1;
    }
    if (p->has_expand) {
        if (hi + 1 >= d->in_h) {
            return p->expand.in_h;
        }
        first = (hi + 1) * p->expand.stride_h - p->expand.pad_top;
    } else {
        first = (oy + 1) * d->stride_h - d->pad_top;
    }
    return first < 0 ? 0 : first;
}

mt_status mt_inverted_bottleneck_s8(const mt_inverted_bottleneck_params *p, const int8_t *input,
                                    const int8_t *expand_weights, const int32_t *expand_bias,
                                    const int8_t *depthwise_weights, const int32_t *depthwise_bias,
                                    const int8_t *project_weights, const int32_t *project_bias, int8_t *output,
                                    int8_t *scratch)
{
    const mt_conv_params *e, *d, *pr;
    int32_t rows, ring_bytes, in_row, out_row, next, oy, ox, oc, pointwise_expand;
    int32_t row_at[MT_NN_IB_MAX_KERNEL];
    int8_t *dw_pixel, *pr_pixel;
    mt_nn_store dw_store;
    mt_status st;

    /* read params, check consistency */
    if (p == NULL || input == NULL || depthwise_weights == NULL || project_weights == NULL || output == NULL ||
        scratch == NULL || (p->has_expand && expand_weights == NULL)) {
        return MT_ERR_NULL;
    }
    e = &p->expand;
    d = &p->depthwise;
    pr = &p->project;
    if (p->has_expand) {
        if ((st = mt_nn_check_conv_stage(e, &p->expand_q, (int64_t)e->kernel_h * e->kernel_w * e->in_c)) != MT_OK) {
            return st;
        }
        if (e->groups != 1 || e->out_h != d->in_h || e->out_w != d->in_w || e->out_c != d->in_c ||
            e->output_zero_point != d->input_zero_point) {
            return MT_ERR_SHAPE;
        }
    }
    if ((st = mt_nn_check_conv_stage(d, &p->depthwise_q, (int64_t)d->kernel_h * d->kernel_w)) != MT_OK) {
        return st;
    }
    if (d->kernel_h > MT_NN_IB_MAX_KERNEL) {
        return MT_ERR_PARAM;
    }
    if ((st = mt_nn_check_conv_stage(pr, &p->project_q, pr->in_c)) != MT_OK) {
        return st;
    }
    if (d->groups != d->in_c || d->out_c != d->in_c || pr->kernel_h != 1 || pr->kernel_w != 1 ||
        pr->stride_h != 1 || pr->stride_w != 1 || pr->groups != 1 || pr->pad_top != 0 || pr->pad_left != 0 ||
        pr->pad_bottom != 0 || pr->pad_right != 0 || pr->in_h != d->out_h || pr->in_w != d->out_w ||
        pr->in_c != d->out_c || pr->input_zero_point != d->output_zero_point) {
        return MT_ERR_SHAPE;
    }
    in_row = p->has_expand ? e->in_w * e->in_c : d->in_w * d->in_c;
    out_row = pr->out_w * pr->out_c;
    if (p->has_residual) {
        const mt_add_params *a = &p->add;
        const mt_conv_params *first = p->has_expand ? e : d;
        if (first->in_h != pr->out_h || first->in_w != pr->out_w || first->in_c != pr->out_c ||
            a->size != pr->out_h * out_row) {
            return MT_ERR_SHAPE;
        }
        if (!mt_nn_is_int8(a->a_zero_point) || !mt_nn_is_int8(a->b_zero_point) ||
            (p->shortcut_first ? a->b_zero_point : a->a_zero_point) != pr->output_zero_point ||
            (p->shortcut_first ? a->a_zero_point : a->b_zero_point) !=
                (p->has_expand ? e->input_zero_point : d->input_zero_point)) {
            return MT_ERR_PARAM;
        }
        if ((st = mt_nn_check_act(a->a_zero_point, a->output_zero_point, a->act_min, a->act_max)) != MT_OK) {
            return st;
        }
        /* (x - z) * 2^left_shift must fit int32: |x - z| <= 255 and 255 * 2^23 < 2^31. */
        if (a->left_shift < 0 || a->left_shift > 23 || a->a_multiplier < 0 || a->b_multiplier < 0 ||
            a->output_multiplier < 0 || a->a_shift < -31 || a->a_shift > 30 || a->b_shift < -31 ||
            a->b_shift > 30 || a->output_shift < -31 || a->output_shift > 30) {
            return MT_ERR_PARAM;
        }
    }
    if (output == input) {
        const int32_t in_h = p->has_expand ? e->in_h : d->in_h;
        if ((int64_t)in_h * in_row < (int64_t)pr->out_h * out_row) {
            return MT_ERR_PARAM;
        }
        for (oy = 0; oy + 1 < pr->out_h; ++oy) {
            if ((int64_t)(oy + 1) * out_row > (int64_t)mt_nn_ib_next_input_row(p, oy) * in_row) {
                return MT_ERR_PARAM;
            }
        }
    }
    rows = d->kernel_h < d->in_h ? d->kernel_h : d->in_h;
    ring_bytes = p->has_expand ? rows * d->in_w * d->in_c : 0;
    dw_pixel = scratch + ring_bytes;
    dw_store = mt_nn_store_of(depthwise_bias, &p->depthwise_q, d);
    pr_pixel = dw_pixel + d->out_c;

    /* loops: per depthwise output row, first the expanded rows it still needs */
    pointwise_expand = p->has_expand && e->kernel_h == 1 && e->kernel_w == 1 && e->stride_h == 1 &&
                       e->stride_w == 1 && e->pad_top == 0 && e->pad_left == 0;
    next = 0; /* the next expanded row to compute */
    for (oy = 0; oy < d->out_h; ++oy) {
        const int32_t y0 = oy * d->stride_h - d->pad_top;
        const int32_t ky_begin = y0 < 0 ? -y0 : 0;
        const int32_t ky_end = d->in_h - y0 < d->kernel_h ? d->in_h - y0 : d->kernel_h;
        const int32_t d_row = d->in_w * d->in_c;
        int32_t ky;
        for (; p->has_expand && next < y0 + ky_end; ++next) { /* into ring slot next % rows */
            int8_t *dst = scratch + (next % rows) * d_row;
            if (pointwise_expand) {
                for (ox = 0; ox < e->out_w; ++ox) {
                    mt_nn_pointwise_pixel_s8(input + (next * e->in_w + ox) * e->in_c, expand_weights, expand_bias,
                                             &p->expand_q, e, dst + ox * e->out_c);
                }
            } else {
                mt_nn_conv_row_s8(e, &p->expand_q, input, e->in_h, expand_weights, expand_bias, next, dst);
            }
        }
        /* offset of each window row's start in the ring (or the input): found once per output row */
        for (ky = ky_begin; ky < ky_end; ++ky) {
            row_at[ky] = p->has_expand ? ((y0 + ky) % rows) * d_row : (y0 + ky) * d_row;
        }
        for (ox = 0; ox < d->out_w; ++ox) {
            const int32_t x0 = ox * d->stride_w - d->pad_left;
            const int8_t *src = p->has_expand ? scratch : input;
            int8_t *y = output + ((int32_t)oy * pr->out_w + ox) * pr->out_c;
            mt_nn_dw_pixel_s8(d, &dw_store, src, row_at, ky_begin, ky_end, x0, depthwise_weights, dw_pixel);
            /* projection (1x1) of that pixel; straight to the output without a residual */
            mt_nn_pointwise_pixel_s8(dw_pixel, project_weights, project_bias, &p->project_q, pr,
                                     p->has_residual ? pr_pixel : y);
            /* residual ADD (mt_add_s8 per element): shortcut = the block input at this pixel,
             * read before the (possibly aliased) output element is written */
            if (p->has_residual) {
                const mt_add_params *a = &p->add;
                const int8_t *s = input + ((int32_t)oy * pr->out_w + ox) * pr->out_c;
                for (oc = 0; oc < pr->out_c; ++oc) {
                    const int32_t va = p->shortcut_first ? s[oc] : pr_pixel[oc];
                    const int32_t vb = p->shortcut_first ? pr_pixel[oc] : s[oc];
                    const int32_t sa = (va - a->a_zero_point) * ((int32_t)1 << a->left_shift);
                    const int32_t sb = (vb - a->b_zero_point) * ((int32_t)1 << a->left_shift);
                    const int32_t total = mt_nn_sat_add_s32(mt_requantize(sa, a->a_multiplier, a->a_shift),
                                                            mt_requantize(sb, a->b_multiplier, a->b_shift));
                    y[oc] = mt_nn_offset_clamp(mt_requantize(total, a->output_multiplier, a->output_shift),
                                               a->output_zero_point, a->act_min, a->act_max);
                }
            }
        }
    }
    return MT_OK;
}
