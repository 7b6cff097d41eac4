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
