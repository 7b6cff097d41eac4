/*
 * mt_depthwise_conv2d_s8: int8 depthwise CONV2D (groups == in_c == out_c, weights
 * [c][kh][kw][1]); the result equals mt_conv2d_s8 with those groups. Each output channel
 * reads one input channel, so the inner loop runs over the kernel window only.
 * Limits: kernel_h <= 16 (MT_ERR_PARAM otherwise).
 */
#include "mt_nn_dw.h"

mt_status mt_depthwise_conv2d_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output)
{
    int32_t oy;
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
    /* loops, channel-planar: each channel's input gathered into a padded plane (the zero point in
     * the padding, mt_nn_dw.h plane rows) on the stack, then its output rows (SMLAD on pairs of taps
     * where the channel's constants qualify, else the reference sums) */
    if (mt_nn_dw_plane_ok(p) && (p->in_h + p->pad_top + p->pad_bottom) * (p->in_w + p->pad_left + p->pad_right) + 4 <=
                                    MT_NN_DW_PLANE_BYTES) {
        int8_t plane[MT_NN_DW_PLANE_BYTES];
        const int32_t seg = p->pad_left + p->in_w + p->pad_right, C = p->in_c, K = p->kernel_h * p->kernel_w;
        const int32_t rows = p->in_h + p->pad_top + p->pad_bottom;
        int32_t c, y, x;
#if MT_NN_DSP_ASM
        const int dw4 = mt_nn_dw4_ok(p, 0, p->kernel_h);
#endif
        memset(plane, (int)(int8_t)p->input_zero_point, (size_t)(rows * seg + 4));
        for (c = 0; c < C; ++c) {
            const int8_t *src = input + c;
            for (y = 0; y < p->in_h; ++y) {
                int8_t *dst = plane + (p->pad_top + y) * seg + p->pad_left;
                for (x = 0; x < p->in_w; ++x) {
                    dst[x] = src[x * C];
                }
                src += p->in_w * C;
            }
            {
                const int8_t *prow[MT_NN_IB_MAX_KERNEL];
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
