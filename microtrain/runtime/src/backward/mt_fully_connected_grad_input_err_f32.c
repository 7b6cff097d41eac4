/* mt_fully_connected_grad_input_err_f32: input gradient of an FC layer from an integer error:
 * mt_fully_connected_grad_input_f32 on d^ = (float)code * 2^e (exact), bit-exact with it:
 * grad_input[i] = sum_o (d^[o] * s_w[o]) * (float)w[o][i], o ascending. */
#include "mt_nn_err.h"

mt_status mt_fully_connected_grad_input_err_f32(const mt_fc_params *p, const float *weight_scale,
                                                const int8_t *weights, const mt_grad_codes *err, float *grad_input)
{
    int32_t o, i;
    float unit;
    mt_status st;

    if (p == NULL || weight_scale == NULL || weights == NULL || grad_input == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_error(err)) != MT_OK) {
        return st;
    }
    if (p->in_c < 1 || p->out_c < 1) {
        return MT_ERR_SHAPE;
    }
    unit = mt_nn_pow2f(err->exponent);
    for (i = 0; i < p->in_c; ++i) {
        grad_input[i] = 0.0f;
    }
    for (o = 0; o < p->out_c; ++o) {
        const float gs = ((float)mt_nn_err_code(err, o) * unit) * weight_scale[o];
        const int8_t *w = weights + o * p->in_c;
        for (i = 0; i < p->in_c; ++i) {
            grad_input[i] += gs * (float)w[i];
        }
    }
    return MT_OK;
}
