/*
 * mt_max_pool2d_grad_f32: gradient w.r.t. the real input of a MAX_POOL2D, from the saved int8
 * input. As interp/window_ops.py max_pool2d_grad: grad_input = 0; each output's gradient
 * (outputs ascending) is added to the first maximum of its clipped window in row-major
 * window order (the scan of mt_max_pool2d_s8 keeps the first of equal values).
 */
#include "mt_nn.h"

mt_status mt_max_pool2d_grad_f32(const mt_pool_params *p, const int8_t *input, const float *grad_output,
                                 float *grad_input)
{
    int32_t oy, ox, c, n;

    if (p == NULL || input == NULL || grad_output == NULL || grad_input == NULL) {
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
            const float *g = grad_output + (oy * p->out_w + ox) * p->c;
            if (ys >= ye || xs >= xe) {
                continue; /* an empty window has no input to pass its gradient to */
            }
            for (c = 0; c < p->c; ++c) {
                int32_t best = (ys * p->in_w + xs) * p->c + c, y, x;
                for (y = ys; y < ye; ++y) {
                    for (x = xs; x < xe; ++x) {
                        const int32_t at = (y * p->in_w + x) * p->c + c;
                        if (input[at] > input[best]) {
                            best = at;
                        }
                    }
                }
                grad_input[best] += g[c];
            }
        }
    }
    return MT_OK;
}
