/* mt_sgd_update_f32: plain fp32 SGD of selected rows (the fp32 head):
 * w[o][e] = w[o][e] - lr * grad[row][e]. */
#include "mt_nn.h"

mt_status mt_sgd_update_f32(float *weights, int32_t channel_size, const float *grad, const mt_channels *ch,
                            float lr)
{
    int32_t j, e;

    if (weights == NULL || grad == NULL || ch == NULL) {
        return MT_ERR_NULL;
    }
    if (channel_size < 1) {
        return MT_ERR_SHAPE;
    }
    if (ch->begin < 0 || ch->begin > ch->end || ch->end > ch->count) {
        return MT_ERR_PARAM;
    }
    for (j = ch->begin; j < ch->end; ++j) {
        if (mt_nn_channel(ch, j) < 0) {
            return MT_ERR_PARAM;
        }
    }
    for (j = ch->begin; j < ch->end; ++j) {
        float *w = weights + mt_nn_channel(ch, j) * channel_size;
        const float *g = grad + (j - ch->begin) * channel_size;
        for (e = 0; e < channel_size; ++e) {
            w[e] = w[e] - lr * g[e];
        }
    }
    return MT_OK;
}
