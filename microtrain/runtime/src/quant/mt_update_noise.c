/*
 * mt_update_noise: the counter-based random number of stochastic update rounding.
 * Counter-based (a hash of seed, step, tensor and element index) rather than a stateful
 * generator, so the order in which elements are updated never changes the result and the
 * simulator can reproduce it for a whole tensor at once.
 */
#include "mt_nn.h"

uint32_t mt_update_noise(uint32_t seed, uint32_t step, uint32_t tensor_id, uint32_t index)
{
    uint32_t h = mt_nn_fmix32(seed ^ (uint32_t)(tensor_id * 0x9E3779B9u));
    h = mt_nn_fmix32(h ^ step);
    h = mt_nn_fmix32(h ^ index);
    return h >> 8; /* 24 bits: exactly representable in a float32 */
}
