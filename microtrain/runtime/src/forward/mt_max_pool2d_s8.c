/*
 * mt_max_pool2d_s8: int8 MAX_POOL2D as TFLite Micro's reference kernel and
 * interp/window_ops.py max_pool2d_s8: the maximum of the window clipped to the input
 * (-128 for an empty window), clamped; input and output share one quantization.
 */
#include "mt_nn.h"

mt_status mt_max_pool2d_s8(const mt_pool_params *p, const int8_t *input, int8_t *output)
{
    int32_t oy, ox, c;

    /* read params, check consistency */
    if (p == NULL || input == NULL || output == NULL) {
        return MT_ERR_NULL;
    }
    if (!mt_nn_pool_shape_ok(p)) {
        return MT_ERR_SHAPE;
    }
    if (!mt_nn_is_int8(p->act_min) || !mt_nn_is_int8(p->act_max) || p->act_min > p->act_max) {
        return MT_ERR_PARAM;
    }

    /* loops */
    for (oy = 0; oy < p->out_h; ++oy) {
        int32_t ys, ye;
        mt_nn_window_1d(oy, p->stride_h, p->pad_top, p->filter_h, p->in_h, &ys, &ye);
        for (ox = 0; ox < p->out_w; ++ox) {
            int32_t xs, xe;
            mt_nn_window_1d(ox, p->stride_w, p->pad_left, p->filter_w, p->in_w, &xs, &xe);
            int8_t *out = output + (oy * p->out_w + ox) * p->c;
            for (c = 0; c < p->c; ++c) {
                int32_t m = -128, y, x;
                for (y = ys; y < ye; ++y) {
                    for (x = xs; x < xe; ++x) {
                        const int32_t v = input[(y * p->in_w + x) * p->c + c];
                        m = v > m ? v : m;
                    }
                }
                out[c] = (int8_t)(m < p->act_min ? p->act_min : m > p->act_max ? p->act_max : m);
            }
        }
    }
    return MT_OK;
}
