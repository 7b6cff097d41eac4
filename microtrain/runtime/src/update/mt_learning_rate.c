/*
 * mt_learning_rate: the learning rate of update t under a schedule (mt_runtime.h gives the exact
 * expressions), computed on the device each step. Python twin: microtrain/runtime/schedule.py,
 * which the simulator uses, so both follow the same rates bit for bit.
 */
#include "mt_nn.h"

float mt_learning_rate(const mt_lr_schedule *s, uint32_t t)
{
    uint32_t d;

    if (s == NULL) {
        return 0.0f;
    }
    if (s->kind == MT_LR_CONSTANT) {
        return s->base_lr;
    }
    if (s->kind != MT_LR_COSINE) {
        return 0.0f;
    }
    if (t < s->warmup) {
        return s->base_lr * ((float)(t + 1u) / (float)s->warmup);
    }
    if (s->total <= s->warmup) {
        return s->base_lr; /* no length given: warm-up, then constant */
    }
    d = s->total - s->warmup;
    return s->base_lr * (0.5f * (1.0f + mt_cos_pi((float)(t - s->warmup) / (float)d)));
}
