/*
 * mt_conv_pack_s8: the set-up pack of a frozen groups-1 conv (a 1x1, or a small-window conv that
 * the fused block runs as a 1x1 over patches): per output channel pair the words the fast 1x1
 * (mt_nn_pointwise_fast_s8) otherwise derives on every call from the weights, bias and
 * quantization -- the weight-row sums of the folded input zero point, the fast-store and
 * folded-store constants -- written by the function that kernel calls (mt_nn_pw_pair_words), so
 * the two cannot differ. Format in mt_nn_fast.h; size mt_conv_pack_get_size. The code generator
 * calls it on the host at compile time (runtime/packs.py) and stores the words in flash.
 */
#include "mt_nn_fast.h"

mt_status mt_conv_pack_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *weights,
                          const int32_t *bias, int32_t *pack)
{
    mt_status st;
    int32_t n, oc;
    mt_nn_store s;

    /* read params, check consistency */
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || weights == NULL || pack == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (p->groups != 1) {
        return MT_ERR_PARAM;
    }
    if ((st = mt_nn_check_act(p->input_zero_point, p->output_zero_point, p->act_min, p->act_max)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_quant(q->multiplier, q->shift, p->out_c)) != MT_OK) {
        return st;
    }
    n = p->kernel_h * p->kernel_w * p->in_c; /* weights per output channel */
    if (n > MT_NN_MAX_DOT_LENGTH) {
        return MT_ERR_OVERFLOW;
    }

    /* per channel pair, the words the kernel would compute (the folded store's where they exist) */
    s = mt_nn_store_of(bias, q, p);
    pack[0] = MT_NN_PACK_PW;
    pack[1] = n;
    for (oc = 0; oc + 1 < p->out_c; oc += 2) {
        mt_nn_pw_pair_words(&s, weights + oc * n, weights + (oc + 1) * n, n, oc, p->input_zero_point, 1,
                            pack + 2 + (oc >> 1) * MT_NN_PACK_PW_WORDS);
    }
    return MT_OK;
}
