/*
 * mt_inverted_bottleneck_stream_s8: mt_inverted_bottleneck_s8 for a block whose input is
 * not held in memory but delivered row by row (a line-scan sensor, camera lines by DMA, or
 * a file): read_rows(dst, first_row, rows, ctx) writes input rows [first_row, first_row +
 * rows) (in_w x in_c int8 each) to dst. The kernel keeps only min(expand kernel_h, in_h)
 * input rows in input_ring and asks for each row exactly once, in increasing order.
 *
 * Same row engine as mt_inverted_bottleneck_s8 (mt_nn_ib.h), so the output is bit-exact with it
 * and with ir/fused_blocks.py.
 * Only blocks with an expansion conv (the first conv of a network) and without a residual
 * (the residual would read the whole input again): MT_ERR_PARAM otherwise.
 *
 * Scratch: mt_inverted_bottleneck_get_buffer_size bytes (as the non-streaming kernel);
 * input_ring: min(expand.kernel_h, expand.in_h) * expand.in_w * expand.in_c bytes.
 */
#include "mt_nn_ib.h"

mt_status mt_inverted_bottleneck_stream_s8(const mt_inverted_bottleneck_params *p, mt_read_rows_fn read_rows,
                                           void *ctx, int8_t *input_ring, const int8_t *expand_weights,
                                           const int32_t *expand_bias, const int8_t *depthwise_weights,
                                           const int32_t *depthwise_bias, const int8_t *project_weights,
                                           const int32_t *project_bias, int8_t *output, int8_t *scratch)
{
    const mt_conv_params *e, *d, *pr;
    mt_status st;

    if (p == NULL || read_rows == NULL || input_ring == NULL || expand_weights == NULL ||
        depthwise_weights == NULL || project_weights == NULL || output == NULL || scratch == NULL) {
        return MT_ERR_NULL;
    }
    if (!p->has_expand || p->has_residual) {
        return MT_ERR_PARAM;
    }
    e = &p->expand;
    d = &p->depthwise;
    pr = &p->project;
    if ((st = mt_nn_check_conv_stage(e, &p->expand_q, (int64_t)e->kernel_h * e->kernel_w * e->in_c)) != MT_OK) {
        return st;
    }
    if (e->groups != 1 || e->out_h != d->in_h || e->out_w != d->in_w || e->out_c != d->in_c ||
        e->output_zero_point != d->input_zero_point) {
        return MT_ERR_SHAPE;
    }
    if ((st = mt_nn_check_conv_stage(d, &p->depthwise_q, (int64_t)d->kernel_h * d->kernel_w)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_conv_stage(pr, &p->project_q, pr->in_c)) != MT_OK) {
        return st;
    }
    if (d->kernel_h > MT_NN_IB_MAX_KERNEL || e->kernel_h > MT_NN_IB_MAX_KERNEL) {
        return MT_ERR_PARAM;
    }
    if (d->groups != d->in_c || d->out_c != d->in_c || pr->kernel_h != 1 || pr->kernel_w != 1 ||
        pr->stride_h != 1 || pr->stride_w != 1 || pr->groups != 1 || pr->pad_top != 0 || pr->pad_left != 0 ||
        pr->pad_bottom != 0 || pr->pad_right != 0 || pr->in_h != d->out_h || pr->in_w != d->out_w ||
        pr->in_c != d->out_c || pr->input_zero_point != d->output_zero_point) {
        return MT_ERR_SHAPE;
    }
    /* loops: the row engine of mt_nn_ib.h, input rows pulled through read_rows */
    mt_nn_ib_run(p, NULL, read_rows, ctx, input_ring, expand_weights, expand_bias, depthwise_weights, depthwise_bias,
                 project_weights, project_bias, output, scratch);
    return MT_OK;
}
