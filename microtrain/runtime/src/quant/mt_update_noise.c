/*
 * mt_update_noise: the counter-based random number of stochastic update rounding.
 * Counter-based (a hash of seed, step, tensor and element index) rather than a stateful
 * generator, so the order in which elements are updated never changes the result and the
 * simulator can reproduce it for a whole tensor at once. The hash itself is in mt_nn.h
 * (mt_nn_noise_base / mt_nn_noise_at), shared with the update kernels.
 */
#include "mt_nn.h"

uint32_t mt_update_noise(uint32_t seed, uint32_t step, uint32_t tensor_id, uint32_t index)
{
    return mt_nn_noise_at(mt_nn_noise_base(seed, step, tensor_id), index);
}
