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
    if (p->in_h < 1 || p->in_w < 1 || p->c < 1 || p->out_h < 1 || p->out_w < 1 || p->filter_h < 1 ||
        p->filter_w < 1 || p->stride_h < 1 || p->stride_w < 1 || p->pad_top < 0 || p->pad_left < 0) {
        return MT_ERR_SHAPE;
    }
    n = p->in_h * p->in_w * p->c;
    for (oy = 0; oy < n; ++oy) {
        grad_input[oy] = 0.0f;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_top;
        const int32_t ys = y0 < 0 ? 0 : y0;
        const int32_t ye = y0 + p->filter_h < p->in_h ? y0 + p->filter_h : p->in_h;
        for (ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_left;
            const int32_t xs = x0 < 0 ? 0 : x0;
            const int32_t xe = x0 + p->filter_w < p->in_w ? x0 + p->filter_w : p->in_w;
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
