/*
 * mt_linear_f32: the fp32 classifier head, output[o] = bias[o] + sum_i w[o][i] * x[i]
 * (accumulated from bias[o], i ascending, no fused multiply-add).
 */
#include "mt_nn.h"

mt_status mt_linear_f32(const mt_fc_params *p, const float *input, const float *weights, const float *bias,
                        float *output)
{
    int32_t o, i;

    if (p == NULL || input == NULL || weights == NULL || output == NULL) {
        return MT_ERR_NULL;
    }
    if (p->in_c < 1 || p->out_c < 1) {
        return MT_ERR_SHAPE;
    }
    for (o = 0; o < p->out_c; ++o) {
        const float *w = weights + o * p->in_c;
        float acc = bias != NULL ? bias[o] : 0.0f;
        for (i = 0; i < p->in_c; ++i) {
            acc += w[i] * input[i];
        }
        output[o] = acc;
    }
    return MT_OK;
}
