/*
 * mt_avg_pool2d_s8: int8 AVG_POOL2D as TFLite Micro's reference kernel and
 * interp/window_ops.py avg_pool2d_s8: the mean of the window clipped to the input, rounded
 * half away from zero, clamped; no requantization (input and output share one quantization).
 */
#include "mt_nn.h"

mt_status mt_avg_pool2d_s8(const mt_pool_params *p, const int8_t *input, int8_t *output)
{
    int32_t oy, ox, c;

    /* read params, check consistency */
    if (p == NULL || input == NULL || output == NULL) {
        return MT_ERR_NULL;
    }
    if (!mt_nn_pool_shape_ok(p)) {
        return MT_ERR_SHAPE;
    }
    if (!mt_nn_is_int8(p->act_min) || !mt_nn_is_int8(p->act_max) || p->act_min > p->act_max ||
        (p->count_include_pad != 0 && p->count_include_pad != 1)) {
        return MT_ERR_PARAM;
    }
    /* Accumulator bound: at most filter_h*filter_w terms of magnitude <= 128; 128 * 2^23 = 2^30. */
    if ((int64_t)p->filter_h * p->filter_w > ((int32_t)1 << 23)) {
        return MT_ERR_OVERFLOW;
    }
    /* every window must hold at least one input pixel (TFLM fails the op otherwise) */
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        if (y0 + p->filter_h <= 0 || y0 >= p->in_h) {
            return MT_ERR_SHAPE;
        }
    }
    for (ox = 0; ox < p->out_w; ++ox) {
        const int32_t x0 = ox * p->stride_w - p->pad_left;
        if (x0 + p->filter_w <= 0 || x0 >= p->in_w) {
            return MT_ERR_SHAPE;
        }
    }

    /* loops */
    for (oy = 0; oy < p->out_h; ++oy) {
        int32_t ys, ye;
        mt_nn_window_1d(oy, p->stride_h, p->pad_top, p->filter_h, p->in_h, &ys, &ye);
        for (ox = 0; ox < p->out_w; ++ox) {
            int32_t xs, xe;
            mt_nn_window_1d(ox, p->stride_w, p->pad_left, p->filter_w, p->in_w, &xs, &xe);
            const int32_t n = p->count_include_pad ? p->filter_h * p->filter_w : (ye - ys) * (xe - xs);
            int8_t *out = output + (oy * p->out_w + ox) * p->c;
            for (c = 0; c < p->c; ++c) {
                int32_t acc = 0, y, x, v;
                for (y = ys; y < ye; ++y) {
                    for (x = xs; x < xe; ++x) {
                        acc += input[(y * p->in_w + x) * p->c + c];
                    }
                }
                /* round half away from zero, as TFLM: C division truncates toward zero */
                v = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
                out[c] = (int8_t)(v < p->act_min ? p->act_min : v > p->act_max ? p->act_max : v);
            }
        }
    }
    return MT_OK;
}
