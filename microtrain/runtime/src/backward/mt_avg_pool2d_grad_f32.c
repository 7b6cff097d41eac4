/*
 * mt_avg_pool2d_grad_f32: gradient w.r.t. the real input of an AVG_POOL2D (rounding is
 * straight-through: the derivative of the real mean). As interp/window_ops.py
 * avg_pool2d_grad: grad_input = 0; for each output pixel (ascending) and channel, every
 * input pixel of its clipped window gets += grad_output / n (n the forward's divisor).
 */
#include "mt_nn.h"

mt_status mt_avg_pool2d_grad_f32(const mt_pool_params *p, const float *grad_output, float *grad_input)
{
    int32_t oy, ox, c, n;

    if (p == NULL || grad_output == NULL || grad_input == NULL) {
        return MT_ERR_NULL;
    }
    if (!mt_nn_pool_shape_ok(p)) {
        return MT_ERR_SHAPE;
    }
    n = p->in_h * p->in_w * p->c;
    for (oy = 0; oy < n; ++oy) {
        grad_input[oy] = 0.0f;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        int32_t ys, ye;
        mt_nn_window_1d(oy, p->stride_h, p->pad_top, p->filter_h, p->in_h, &ys, &ye);
        for (ox = 0; ox < p->out_w; ++ox) {
            int32_t xs, xe;
            mt_nn_window_1d(ox, p->stride_w, p->pad_left, p->filter_w, p->in_w, &xs, &xe);
            const int32_t count = p->count_include_pad ? p->filter_h * p->filter_w : (ye - ys) * (xe - xs);
            const float *g = grad_output + (oy * p->out_w + ox) * p->c;
            if (count < 1) {
                return MT_ERR_SHAPE;
            }
            for (c = 0; c < p->c; ++c) {
                const float share = g[c] / (float)count;
                int32_t y, x;
                for (y = ys; y < ye; ++y) {
                    for (x = xs; x < xe; ++x) {
                        grad_input[(y * p->in_w + x) * p->c + c] += share;
                    }
                }
            }
        }
    }
    return MT_OK;
}
