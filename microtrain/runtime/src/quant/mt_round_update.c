/*
 * mt_round_update: the rounding of the on-device weight update (written once in C; the
 * Python twin is microtrain/train/rounding.py). Saturation is the caller's (int8 weights
 * and int32 biases saturate differently).
 */
#include <math.h>

#include "mt_runtime.h"

float mt_round_update(float v, int32_t rounding, uint32_t seed, uint32_t step, uint32_t tensor_id, uint32_t index)
{
    if (rounding == MT_ROUND_NEAREST) {
        return floorf(v + 0.5f);
    }
    if (rounding == MT_ROUND_STOCHASTIC) {
        /* u in [0, 1) with 24-bit resolution; the conversion and the scaling are exact. */
        const float u = (float)mt_update_noise(seed, step, tensor_id, index) * (1.0f / 16777216.0f);
        return floorf(v + u);
    }
    return v;
}
