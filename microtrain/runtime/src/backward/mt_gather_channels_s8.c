/* mt_gather_channels_s8: save only the kept channels of an int8 activation, for the
 * sliced weight gradient of a depthwise sub-tensor update. */
#include "mt_nn.h"

mt_status mt_gather_channels_s8(const int8_t *x, int32_t spatial, int32_t c, const mt_channels *ch, int8_t *out)
{
    mt_channels all;
    int32_t s, j;
    mt_status st;

    if (x == NULL || ch == NULL || out == NULL) {
        return MT_ERR_NULL;
    }
    if (spatial < 0 || c < 1) {
        return MT_ERR_SHAPE;
    }
    all = *ch;
    all.begin = 0;
    all.end = ch->count;
    if ((st = mt_nn_check_channels(&all, c)) != MT_OK) {
        return st;
    }
    for (s = 0; s < spatial; ++s) {
        for (j = 0; j < ch->count; ++j) {
            out[s * ch->count + j] = x[s * c + mt_nn_channel(ch, j)];
        }
    }
    return MT_OK;
}
