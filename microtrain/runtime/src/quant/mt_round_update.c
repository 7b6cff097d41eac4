/*
 * mt_round_update: the rounding of the on-device weight update (the Python twin is
 * microtrain/runtime/rounding.py). The arithmetic is mt_nn_round in mt_nn.h, which the update
 * kernels call directly with the (seed, step, tensor) hash computed once per call.
 * Saturation is the caller's (int8 weights and int32 biases saturate differently).
 */
#include "mt_nn.h"

float mt_round_update(float v, int32_t rounding, uint32_t seed, uint32_t step, uint32_t tensor_id, uint32_t index)
{
    return mt_nn_round(v, rounding, mt_nn_noise_base(seed, step, tensor_id), index);
}
