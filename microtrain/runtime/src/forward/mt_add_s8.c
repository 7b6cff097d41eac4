/*
 * mt_add_s8: TFLite int8 ADD, as interp/reference.py _add with add_params:
 * both inputs (x - z) * 2^left_shift are rescaled to a common scale, summed, requantized to
 * the output scale, + z_y, clamp. The output may alias an input (element-wise).
 */
#include "mt_nn_fast.h"

mt_status mt_add_s8(const mt_add_params *p, const int8_t *a, const int8_t *b, int8_t *output)
{
    int32_t i;
    mt_status st;

    /* read params, check consistency */
    if (p == NULL || a == NULL || b == NULL || output == NULL) {
        return MT_ERR_NULL;
    }
    if (p->size < 0) {
        return MT_ERR_SHAPE;
    }
    if (!mt_nn_is_int8(p->a_zero_point) || !mt_nn_is_int8(p->b_zero_point)) {
        return MT_ERR_PARAM;
    }
    if ((st = mt_nn_check_act(p->a_zero_point, p->output_zero_point, p->act_min, p->act_max)) != MT_OK) {
        return st;
    }
    /* (x - z) * 2^left_shift must fit int32: |x - z| <= 255 and 255 * 2^23 < 2^31. */
    if (p->left_shift < 0 || p->left_shift > 23) {
        return MT_ERR_PARAM;
    }
    if (p->a_multiplier < 0 || p->b_multiplier < 0 || p->output_multiplier < 0 || p->a_shift < -31 ||
        p->a_shift > 30 || p->b_shift < -31 || p->b_shift > 30 || p->output_shift < -31 || p->output_shift > 30) {
        return MT_ERR_PARAM;
    }

    /* loops: the fast requantization where p qualifies (mt_nn_add_fast_s8), else the reference */
    if (mt_nn_add_fast_s8(p, a, b, output, p->size)) {
        return MT_OK;
    }
    for (i = 0; i < p->size; ++i) {
        const int32_t sa = ((int32_t)a[i] - p->a_zero_point) * ((int32_t)1 << p->left_shift);
        const int32_t sb = ((int32_t)b[i] - p->b_zero_point) * ((int32_t)1 << p->left_shift);
        /* The reference sums the two rescaled values in int64 and requantize saturates the
         * sum; a saturating int32 add gives the same result (see mt_nn_sat_add_s32). With
         * add_params' multipliers (< 1/2) each term is below 2^27, so it never saturates. */
        const int32_t total = mt_nn_sat_add_s32(mt_requantize(sa, p->a_multiplier, p->a_shift),
                                                mt_requantize(sb, p->b_multiplier, p->b_shift));
        /* one (output) requantize call, offset, clamp, store */
        output[i] = mt_nn_offset_clamp(mt_requantize(total, p->output_multiplier, p->output_shift),
                                       p->output_zero_point, p->act_min, p->act_max);
    }
    return MT_OK;
}
