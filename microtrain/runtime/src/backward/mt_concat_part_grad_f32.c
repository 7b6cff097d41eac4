/*
 * mt_concat_part_grad_f32: gradient w.r.t. one input of a CONCAT, the inverse copy of
 * mt_concat_part_s8: grad_input[k * in_inner + j] = grad_output[k * out_inner + offset + j]
 * (interp/window_ops.py concat_grad).
 */
#include "mt_nn.h"

mt_status mt_concat_part_grad_f32(const mt_concat_params *p, const float *grad_output, float *grad_input)
{
    int32_t k, j;

    if (p == NULL || grad_output == NULL || grad_input == NULL) {
        return MT_ERR_NULL;
    }
    if (p->outer < 1 || p->in_inner < 1 || p->offset < 0 || p->offset + p->in_inner > p->out_inner) {
        return MT_ERR_SHAPE;
    }
    for (k = 0; k < p->outer; ++k) {
        const float *src = grad_output + k * p->out_inner + p->offset;
        float *dst = grad_input + k * p->in_inner;
        for (j = 0; j < p->in_inner; ++j) {
            dst[j] = src[j];
        }
    }
    return MT_OK;
}
