/*
 * mt_inverted_bottleneck_s8: a frozen inverted-bottleneck block, row-streamed, bit-exact
 * with running its ops one after the other (ir/fused_blocks.py defines it that way):
 *
 *     [expand CONV2D, groups 1, any kernel] -> depthwise CONV2D -> 1x1 CONV2D [-> ADD(input)]
 *
 * Instead of materialising the expanded tensor (e.g. 64x64x48) and the depthwise output,
 * the kernel keeps a ring of min(kernel_h, in_h) expanded rows in the scratch buffer and runs
 * the block one depthwise output row at a time (mt_nn_ib.h): each expanded row is computed
 * exactly once, then the depthwise output row, its projection and the residual ADD. Every
 * element goes through the same int32 sum and the same requantization as in mt_conv2d_s8 /
 * mt_depthwise_conv2d_s8 / mt_pointwise_conv2d_s8 / mt_add_s8, so the result is identical;
 * integer sums are exact, so the loop order does not matter (the accumulator bounds are
 * checked below).
 *
 * Limits: depthwise kernel_h <= 16 (MT_ERR_PARAM otherwise).
 * Scratch: as many bytes as mt_inverted_bottleneck_get_buffer_size returns; it may not overlap input or
 * output. The output may be the input itself (same pointer) when the output is no larger
 * than the input and no later row reads input bytes an earlier output row
 * overwrites (checked here; MT_ERR_PARAM otherwise; Python twin
 * compiler/inplace.py).
 */
#include "mt_nn_ib.h"

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
    int32_t in_row, out_row, oy;
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
    /* loops: the row engine of mt_nn_ib.h (ring of channel-planar expanded rows, one depthwise
     * output row, its projection, the residual ADD row by row) */
    mt_nn_ib_run(p, input, NULL, NULL, NULL, expand_weights, expand_bias, depthwise_weights, depthwise_bias,
                 project_weights, project_bias, output, scratch);
    return MT_OK;
}
