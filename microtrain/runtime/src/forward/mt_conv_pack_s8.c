/*
 * mt_conv_pack_s8: the set-up pack of a frozen conv, the words its fast int8 forward otherwise
 * derives on every call from the weights, bias and quantization alone, written by the functions
 * the kernels call, so the two cannot differ:
 * - groups 1 (a 1x1, or a small-window conv that the fused block runs as a 1x1 over patches): per
 *   output channel pair the weight-row sums of the folded input zero point and the fast-store and
 *   folded-store constants (mt_nn_pw_pair_words; format in mt_nn_fast.h); with extended = 1 also the
 *   pair's weight rows as the asm reads them (doubled int16 lanes, 2 bytes per weight: for convs
 *   called per row, where extending the rows on every call costs most, and rows too long for the
 *   kernel's stack buffer), with extended = 2 the rows alone (a trained bias: the words depend on it);
 * - depthwise, square 3x3 / 5x5 / 7x7 kernel: per channel the packed doubled taps of the asm rows
 *   and the folded-store constants (mt_nn_dw4_words; format in mt_nn_dw.h).
 * Size mt_conv_pack_get_size (MT_ERR_PARAM for any other conv). The code generator calls it on the
 * host at compile time (runtime/packs.py) and stores the words in flash.
 */
#include "mt_nn_dw.h"

mt_status mt_conv_pack_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *weights,
                          const int32_t *bias, int32_t extended, int32_t *pack)
{
    mt_status st;
    int32_t n, c;
    mt_nn_store s;

    /* read params, check consistency */
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || weights == NULL || pack == NULL) {
        return MT_ERR_NULL;
    }
    n = p->kernel_h * p->kernel_w * (p->in_c / (p->groups > 0 ? p->groups : 1)); /* weights per output channel */
    if ((st = mt_nn_check_conv_stage(p, q, n)) != MT_OK) {
        return st;
    }
    if (mt_conv_pack_get_size(p, extended) == 0) {
        return MT_ERR_PARAM;
    }

    s = mt_nn_store_of(bias, q, p);
    if (p->groups == 1) { /* per channel pair, the words the 1x1 would compute (the folded store's where they exist) */
        const int32_t words = extended != 2 ? MT_NN_PACK_PW_WORDS : 0, ne4 = (n + 3) & ~3;
        int32_t *rows = pack + 2 + words * (p->out_c / 2);
        pack[0] = extended == 2 ? MT_NN_PACK_PWR : extended ? MT_NN_PACK_PWX : MT_NN_PACK_PW;
        pack[1] = n;
        for (c = 0; c + 1 < p->out_c; c += 2) {
            if (words > 0) {
                mt_nn_pw_pair_words(&s, weights + c * n, weights + (c + 1) * n, n, c, p->input_zero_point, 1,
                                    pack + 2 + (c >> 1) * words);
            }
            if (extended) { /* the rows as the asm pairs read them (doubled int16 lanes) */
                mt_nn_extend2_ref_s8(weights + c * n, weights + (c + 1) * n, n, rows + (c >> 1) * ne4);
            }
        }
        return MT_OK;
    }
    pack[0] = MT_NN_PACK_DW; /* depthwise: per channel, the words of the asm rows */
    pack[1] = p->kernel_w;
    for (c = 0; c < p->out_c; ++c) {
        mt_nn_dw4_words(&s, c, weights + c * n, p->kernel_w, p->input_zero_point,
                        pack + 2 + c * MT_NN_DW4_WORDS(p->kernel_w));
    }
    return MT_OK;
}
