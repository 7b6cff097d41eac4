/*
 * mt_concat_part_s8: one input of an int8 CONCAT (TFLite Micro's kernel copies, its inputs
 * and output share one quantization): [outer][in_inner] into columns [offset, offset +
 * in_inner) of [outer][out_inner]. One call per input builds interp/window_ops.py concat.
 */
#include "mt_nn.h"

mt_status mt_concat_part_s8(const mt_concat_params *p, const int8_t *input, int8_t *output)
{
    int32_t k, j;

    /* read params, check consistency */
    if (p == NULL || input == NULL || output == NULL) {
        return MT_ERR_NULL;
    }
    if (p->outer < 1 || p->in_inner < 1 || p->offset < 0 || p->offset + p->in_inner > p->out_inner) {
        return MT_ERR_SHAPE;
    }

    /* loops */
    for (k = 0; k < p->outer; ++k) {
        const int8_t *src = input + k * p->in_inner;
        int8_t *dst = output + k * p->out_inner + p->offset;
        for (j = 0; j < p->in_inner; ++j) {
            dst[j] = src[j];
        }
    }
    return MT_OK;
}
