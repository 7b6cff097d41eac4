/* mt_bias_grad_f32: gradient w.r.t. the real bias of selected channels, the sum of the
 * output gradient over all positions (positions ascending, from 0.0f). */
#include "mt_nn.h"

mt_status mt_bias_grad_f32(const float *grad_output, int32_t spatial, int32_t c, const mt_channels *ch,
                           float *grad_bias)
{
    int32_t j, s;
    mt_status st;

    if (grad_output == NULL || ch == NULL || grad_bias == NULL) {
        return MT_ERR_NULL;
    }
    if (spatial < 1 || c < 1) {
        return MT_ERR_SHAPE;
    }
    if ((st = mt_nn_check_channels(ch, c)) != MT_OK) {
        return st;
    }
    for (j = ch->begin; j < ch->end; ++j) {
        const int32_t o = mt_nn_channel(ch, j);
        float acc = 0.0f;
        for (s = 0; s < spatial; ++s) {
            acc += grad_output[s * c + o];
        }
        grad_bias[j - ch->begin] = acc;
    }
    return MT_OK;
}
