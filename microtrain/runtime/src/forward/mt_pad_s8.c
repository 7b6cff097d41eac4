/*
 * mt_pad_s8: int8 PAD as TFLite Micro's kernel and interp/window_ops.py pad_s8: the input
 * [in_h][in_w][in_c] placed at (pad_top, pad_left, pad_front) of the output, pad_value around.
 */
#include "mt_nn.h"

mt_status mt_pad_s8(const mt_pad_params *p, const int8_t *input, int8_t *output)
{
    int32_t out_h, out_w, out_c, y, x, c;

    /* read params, check consistency */
    if (p == NULL || input == NULL || output == NULL) {
        return MT_ERR_NULL;
    }
    if (p->in_h < 1 || p->in_w < 1 || p->in_c < 1 || p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 ||
        p->pad_right < 0 || p->pad_front < 0 || p->pad_back < 0) {
        return MT_ERR_SHAPE;
    }
    if (!mt_nn_is_int8(p->pad_value)) {
        return MT_ERR_PARAM;
    }
    out_h = p->pad_top + p->in_h + p->pad_bottom;
    out_w = p->pad_left + p->in_w + p->pad_right;
    out_c = p->pad_front + p->in_c + p->pad_back;

    /* loops: every output element once, in memory order */
    for (y = 0; y < out_h; ++y) {
        const int32_t iy = y - p->pad_top;
        for (x = 0; x < out_w; ++x) {
            const int32_t ix = x - p->pad_left;
            int8_t *out = output + (y * out_w + x) * out_c;
            const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
            for (c = 0; c < out_c; ++c) {
                const int32_t ic = c - p->pad_front;
                out[c] = (inside && ic >= 0 && ic < p->in_c) ? input[(iy * p->in_w + ix) * p->in_c + ic]
                                                             : (int8_t)p->pad_value;
            }
        }
    }
    return MT_OK;
}
