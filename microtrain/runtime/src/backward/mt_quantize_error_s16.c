/* mt_quantize_error_s16: mask a layer's error and hold it as 16-bit codes with a power-of-two
 * scale (the rule in mt_nn_err.h; Python twin microtrain/runtime/grad_quant.py). Two passes:
 * the max |d| over the masked tensor (any non-finite element makes the whole tensor zero, as
 * the twin's max would be NaN or infinite), then the codes. */
#include "mt_nn_err.h"

mt_status mt_quantize_error_s16(const float *grad, const uint8_t *mask, int32_t n, int16_t *codes,
                               int32_t *exponent)
{
    const int32_t qmax = (1 << (16 - 1)) - 1;
    float m = 0.0f, inv;
    int32_t i, e, nonzero, finite = 1;

    if (grad == NULL || codes == NULL || exponent == NULL) {
        return MT_ERR_NULL;
    }
    if (n < 0) {
        return MT_ERR_SHAPE;
    }
    for (i = 0; i < n; ++i) {
        float a;
        if (mask != NULL && !((mask[i >> 3] >> (i & 7)) & 1u)) {
            continue;
        }
        a = grad[i] < 0.0f ? -grad[i] : grad[i];
        if (!(a <= FLT_MAX)) {
            finite = 0;
        } else if (a > m) {
            m = a;
        }
    }
    nonzero = 0;
    e = finite ? mt_nn_err_exponent(m, 16, &nonzero) : 0;
    *exponent = e;
    inv = nonzero ? mt_nn_pow2f(-e) : 0.0f;
    for (i = 0; i < n; ++i) {
        int32_t q = 0;
        if (nonzero && (mask == NULL || ((mask[i >> 3] >> (i & 7)) & 1u))) {
            q = mt_nn_rint_small(grad[i] * inv); /* exact scaling: |grad * 2^-e| < 2^15 */
            q = q > qmax ? qmax : (q < -qmax ? -qmax : q);
        }
        codes[i] = (int16_t)q;
    }
    return MT_OK;
}
