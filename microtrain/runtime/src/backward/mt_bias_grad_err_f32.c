/* mt_bias_grad_err_f32: bias gradient of selected channels from an integer error: the int32
 * sum of the codes over the positions (exact, any order), then (float)sum * 2^e, which is
 * float32 of the exact sum of the errors d^ (the scaling by 2^e is exact). */
#include "mt_nn_err.h"

mt_status mt_bias_grad_err_f32(const mt_grad_codes *err, int32_t spatial, int32_t c, const mt_channels *ch,
                               float *grad_bias)
{
    int32_t j, s;
    float scale;
    mt_status st;

    if (ch == NULL || grad_bias == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_error(err)) != MT_OK) {
        return st;
    }
    if (spatial < 1 || c < 1) {
        return MT_ERR_SHAPE;
    }
    if (spatial > INT32_MAX / 32767) { /* |code| <= 32767: the int32 sum cannot overflow */
        return MT_ERR_OVERFLOW;
    }
    if ((st = mt_nn_check_channels(ch, c)) != MT_OK) {
        return st;
    }
    scale = mt_nn_pow2f(err->exponent);
    for (j = ch->begin; j < ch->end; ++j) {
        const int32_t o = mt_nn_channel(ch, j);
        int32_t acc = 0;
        for (s = 0; s < spatial; ++s) {
            acc += mt_nn_err_code(err, s * c + o);
        }
        grad_bias[j - ch->begin] = (float)acc * scale;
    }
    return MT_OK;
}
