/*
 * mt_softmax_cross_entropy_f32: loss = -log softmax(logits)[label] and its gradient
 * softmax(logits) - onehot(label). Numerically stable: the maximum is subtracted before
 * the exponential, so every exponential is in (0, 1] and the sum in [1, n]; the log never sees 0.
 * mt_expf / mt_logf, not libm's: the loss and its gradient are the same bits on every target.
 */
#include "mt_nn.h"

mt_status mt_softmax_cross_entropy_f32(const float *logits, int32_t n, int32_t label, float *loss,
                                       float *grad_logits)
{
    float m, sum, inv;
    int32_t i;

    if (logits == NULL || loss == NULL) {
        return MT_ERR_NULL;
    }
    if (n < 1) {
        return MT_ERR_SHAPE;
    }
    if (label < 0 || label >= n) {
        return MT_ERR_PARAM;
    }
    m = logits[0];
    for (i = 1; i < n; ++i) {
        if (logits[i] > m) {
            m = logits[i];
        }
    }
    sum = 0.0f;
    for (i = 0; i < n; ++i) {
        sum += mt_expf(logits[i] - m);
    }
    /* Read the label's logit before grad_logits (which may alias logits) is written. */
    *loss = mt_logf(sum) - (logits[label] - m);
    if (grad_logits != NULL) {
        inv = 1.0f / sum;
        for (i = 0; i < n; ++i) {
            grad_logits[i] = mt_expf(logits[i] - m) * inv;
        }
        grad_logits[label] -= 1.0f;
    }
    return MT_OK;
}
