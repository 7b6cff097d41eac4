/*
 * mt_global_avg_pool_s8: int8 GLOBAL_AVG_POOL, as interp/reference.py _global_avg_pool:
 * acc[c] = sum_{y,x} (x[y][x][c] - z_x), requantized by s_x / (s_y * H * W)
 * (avg_pool_params), + z_y, clamp.
 */
#include "mt_nn.h"

mt_status mt_global_avg_pool_s8(const mt_avg_pool_params *p, const int8_t *input, int8_t *output)
{
    int32_t pixels, c, n;
    mt_status st;

    /* read params, check consistency */
    if (p == NULL || input == NULL || output == NULL) {
        return MT_ERR_NULL;
    }
    if (p->in_h < 1 || p->in_w < 1 || p->c < 1) {
        return MT_ERR_SHAPE;
    }
    if ((st = mt_nn_check_act(p->input_zero_point, p->output_zero_point, p->act_min, p->act_max)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_quant(&p->multiplier, &p->shift, 1)) != MT_OK) {
        return st;
    }
    /* Accumulator bound: H*W terms of magnitude <= 255; 255 * 2^23 < 2^31. */
    if ((int64_t)p->in_h * p->in_w > ((int32_t)1 << 23)) {
        return MT_ERR_OVERFLOW;
    }

    /* loops */
    pixels = p->in_h * p->in_w;
    for (c = 0; c < p->c; ++c) {
        int32_t acc = 0;
        for (n = 0; n < pixels; ++n) {
            acc += (int32_t)input[n * p->c + c] - p->input_zero_point;
        }
        /* one requantize call, offset, clamp, store */
        output[c] = mt_nn_offset_clamp(mt_requantize(acc, p->multiplier, p->shift), p->output_zero_point,
                                       p->act_min, p->act_max);
    }
    return MT_OK;
}
