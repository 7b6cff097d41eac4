/*
 * mt_conv_pack_get_size: bytes of the set-up pack of conv p (mt_conv_pack_s8): a groups-1 conv
 * (mt_nn_fast.h: two header words, per output channel pair nine words (extended 0), those and the
 * pair's pre-extended rows, the row length rounded up to 4 words (1), or the rows alone (2)) or a
 * depthwise conv with a
 * square 3x3, 5x5 or 7x7 kernel (mt_nn_dw.h: two header words, MT_NN_DW4_WORDS(k) per channel).
 * 0 for p NULL or a conv no pack covers.
 */
#include "mt_nn_dw.h"

int32_t mt_conv_pack_get_size(const mt_conv_params *p, int32_t extended)
{
    const int32_t k = p != NULL ? p->kernel_w : 0;
    if (p == NULL || p->out_c < 1) {
        return 0;
    }
    if (p->groups == 1) {
        const int32_t ne4 = (p->kernel_h * p->kernel_w * p->in_c + 3) & ~3;
        return 4 * (2 + ((extended != 2 ? MT_NN_PACK_PW_WORDS : 0) + (extended ? ne4 : 0)) * (p->out_c / 2));
    }
    if (p->groups == p->in_c && p->out_c == p->in_c && p->kernel_h == k && (k == 3 || k == 5 || k == 7)) {
        return 4 * (2 + MT_NN_DW4_WORDS(k) * p->out_c);
    }
    return 0;
}
