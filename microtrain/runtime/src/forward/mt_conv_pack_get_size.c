/*
 * mt_conv_pack_get_size: bytes of the set-up pack of conv p (mt_conv_pack_s8; format in
 * mt_nn_fast.h): a groups-1 conv, two header words and nine words per output channel pair.
 * 0 for p NULL or a conv the pack does not cover.
 */
#include "mt_nn_fast.h"

int32_t mt_conv_pack_get_size(const mt_conv_params *p)
{
    if (p == NULL || p->groups != 1 || p->out_c < 0) {
        return 0;
    }
    return 4 * (2 + MT_NN_PACK_PW_WORDS * (p->out_c / 2));
}
