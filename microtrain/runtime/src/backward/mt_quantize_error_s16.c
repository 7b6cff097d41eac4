/* mt_quantize_error_s16: mask a layer's error and hold it as 16-bit codes with a power-of-two
 * scale (the rule in mt_nn_err.h; Python twin microtrain/runtime/grad_quant.py). Two passes:
 * the scale (mt_nn_err_scale), then the codes. */
#include "mt_nn_err.h"

mt_status mt_quantize_error_s16(const float *grad, const uint8_t *mask, int32_t n, int16_t *codes,
                               int32_t *exponent)
{
    const int32_t qmax = (1 << (16 - 1)) - 1;
    float inv;
    int32_t i;

    if (grad == NULL || codes == NULL || exponent == NULL) {
        return MT_ERR_NULL;
    }
    if (n < 0) {
        return MT_ERR_SHAPE;
    }
    mt_nn_err_scale(grad, mask, n, 16, exponent, &inv);
    for (i = 0; i < n; ++i) {
        int32_t q = 0;
        if (inv != 0.0f && mt_nn_err_kept(mask, i)) {
            q = mt_nn_rint_small(grad[i] * inv); /* exact scaling: |grad * 2^-e| < 2^15 */
            q = q > qmax ? qmax : (q < -qmax ? -qmax : q);
        }
        codes[i] = (int16_t)q;
    }
    return MT_OK;
}
