/*
 * mt_pad_grad_f32: gradient w.r.t. the real input of a PAD: the inner [in_h][in_w][in_c]
 * block of the output gradient (interp/window_ops.py pad_grad).
 */
#include "mt_nn.h"

mt_status mt_pad_grad_f32(const mt_pad_params *p, const float *grad_output, float *grad_input)
{
    int32_t out_w, out_c, y, x, c;

    if (p == NULL || grad_output == NULL || grad_input == NULL) {
        return MT_ERR_NULL;
    }
    if (p->in_h < 1 || p->in_w < 1 || p->in_c < 1 || p->pad_top < 0 || p->pad_bottom < 0 || p->pad_left < 0 ||
        p->pad_right < 0 || p->pad_front < 0 || p->pad_back < 0) {
        return MT_ERR_SHAPE;
    }
    out_w = p->pad_left + p->in_w + p->pad_right;
    out_c = p->pad_front + p->in_c + p->pad_back;
    for (y = 0; y < p->in_h; ++y) {
        for (x = 0; x < p->in_w; ++x) {
            const float *g = grad_output + ((y + p->pad_top) * out_w + x + p->pad_left) * out_c + p->pad_front;
            float *d = grad_input + (y * p->in_w + x) * p->in_c;
            for (c = 0; c < p->in_c; ++c) {
                d[c] = g[c];
            }
        }
    }
    return MT_OK;
}
