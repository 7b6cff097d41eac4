/*
 * mt_sgd_update_s8: fused SGD (+QAS) step on int8 weights, in place, for selected output
 * channels: v = (float)w - (lr * g) * f_c, rounded as mt_round_update does (mt_nn_round),
 * saturated to [-127, 127], the gradient first taken through the optimizer state (accumulation,
 * momentum; mt_nn_direction) when the tensor has one. No float master copy exists: the int8
 * tensor is the only state, exactly as the simulator (microtrain/runtime/rounding.py) models it.
 */
#include "mt_nn.h"


mt_status mt_sgd_update_s8(int8_t *weights, int32_t weights_sliced, int32_t channel_size, const float *factor,
                           const float *grad, const mt_channels *ch, const mt_update_params *u)
{
    int32_t j, e;
    uint32_t noise_base;

    if (weights == NULL || factor == NULL || grad == NULL || ch == NULL || u == NULL) {
        return MT_ERR_NULL;
    }
    if (channel_size < 1) {
        return MT_ERR_SHAPE;
    }
    if ((weights_sliced != 0 && weights_sliced != 1) ||
        (u->rounding != MT_ROUND_NEAREST && u->rounding != MT_ROUND_STOCHASTIC)) {
        return MT_ERR_PARAM;
    }
    /* Channel indices are checked against what the index list can address: the kernel does
     * not know out_c, so the caller guarantees index[j] < out_c (the compiler emits both). */
    if (ch->begin < 0 || ch->begin > ch->end || ch->end > ch->count) {
        return MT_ERR_PARAM;
    }
    for (j = ch->begin; j < ch->end; ++j) {
        if (mt_nn_channel(ch, j) < 0) {
            return MT_ERR_PARAM;
        }
    }

    /* the (seed, step, tensor) part of the stochastic-rounding hash, once per call */
    noise_base = mt_nn_noise_base(u->seed, u->step, u->tensor_id);
    if (u->accum == NULL && u->momentum == NULL) {
        /* plain SGD (no optimizer state): the same expressions, with u's fields read once (the
         * int8 stores to w could alias them, so the loop below reloads them per element) */
        const float lr = u->lr;
        const int32_t rounding = u->rounding;
        for (j = ch->begin; j < ch->end; ++j) {
            const int32_t o = mt_nn_channel(ch, j);
            const float f = factor[o];
            const float *g = grad + (j - ch->begin) * channel_size;
            int8_t *w = weights + (weights_sliced ? j : o) * channel_size;
            const uint32_t i0 = (uint32_t)o * (uint32_t)channel_size;
            for (e = 0; e < channel_size; ++e) {
                const float v = (float)w[e] - (lr * g[e]) * f;
                const float r = mt_nn_round(v, rounding, noise_base, i0 + (uint32_t)e);
                if (r != r) {
                    continue;
                }
                w[e] = r < -127.0f ? (int8_t)-127 : r > 127.0f ? (int8_t)127 : (int8_t)r;
            }
        }
        return MT_OK;
    }
    for (j = ch->begin; j < ch->end; ++j) {
        const int32_t o = mt_nn_channel(ch, j);
        const float f = factor[o];
        const float *g = grad + (j - ch->begin) * channel_size;
        int8_t *w = weights + (weights_sliced ? j : o) * channel_size;
        for (e = 0; e < channel_size; ++e) {
            /* flat index of the element in the FULL tensor, whatever the storage */
            const uint32_t i = (uint32_t)o * (uint32_t)channel_size + (uint32_t)e;
            float d = g[e];
            if (!mt_nn_direction(u, (uint32_t)j * (uint32_t)channel_size + (uint32_t)e, &d)) {
                continue; /* accumulating: no update on this sample */
            }
            const float v = (float)w[e] - (u->lr * d) * f;
            const float r = mt_nn_round(v, u->rounding, noise_base, i);
            if (r != r) {
                continue; /* NaN gradient: keep the weight */
            }
            w[e] = r < -127.0f ? (int8_t)-127 : r > 127.0f ? (int8_t)127 : (int8_t)r;
        }
    }
    return MT_OK;
}
