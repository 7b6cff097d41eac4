/*
 * mt_sgd_update_s32: fused SGD (+QAS) step on int32 biases, in place:
 * v = (float)b - (lr * g) * f_c, rounded as mt_round_update does (mt_nn_round; element index =
 * channel),
 * saturated to the int32 range, the gradient first taken through the optimizer state (accumulation,
 * momentum; mt_nn_direction) when the tensor has one. (float)b rounds large biases to 24 significant bits:
 * that is the documented rule, shared with the simulator.
 */
#include "mt_nn.h"


mt_status mt_sgd_update_s32(int32_t *bias, const float *factor, const float *grad, const mt_channels *ch,
                            const mt_update_params *u)
{
    int32_t j;
    uint32_t noise_base;

    if (bias == NULL || factor == NULL || grad == NULL || ch == NULL || u == NULL) {
        return MT_ERR_NULL;
    }
    if (u->rounding != MT_ROUND_NEAREST && u->rounding != MT_ROUND_STOCHASTIC) {
        return MT_ERR_PARAM;
    }
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
    for (j = ch->begin; j < ch->end; ++j) {
        const int32_t o = mt_nn_channel(ch, j);
        float d = grad[j - ch->begin];
        if (!mt_nn_direction(u, (uint32_t)j, &d)) {
            continue; /* accumulating: no update on this sample */
        }
        const float v = (float)bias[o] - (u->lr * d) * factor[o];
        const float r = mt_nn_round(v, u->rounding, noise_base, (uint32_t)o);
        if (r != r) {
            continue; /* NaN gradient: keep the bias */
        }
        /* 2^31 is exactly representable; every float below it and >= -2^31 converts exactly
         * (r is an integer after floorf). */
        if (r >= 2147483648.0f) {
            bias[o] = INT32_MAX;
        } else if (r < -2147483648.0f) {
            bias[o] = INT32_MIN;
        } else {
            bias[o] = (int32_t)r;
        }
    }
    return MT_OK;
}
