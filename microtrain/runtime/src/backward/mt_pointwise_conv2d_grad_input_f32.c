/*
 * mt_pointwise_conv2d_grad_input_f32: input gradient of a 1x1, stride 1, unpadded, single
 * group conv with contiguous [out_c][in_c] weights; bit-exact with mt_conv2d_grad_input_f32
 * (the loop nest is mt_pointwise_conv2d_grad_input_rows_f32's).
 */
#include "mt_nn.h"

mt_status mt_pointwise_conv2d_grad_input_f32(const mt_conv_params *p, const float *weight_scale,
                                             const int8_t *weights, const float *grad_output, float *grad_input)
{
    if (weights == NULL) {
        return MT_ERR_NULL;
    }
    return mt_pointwise_conv2d_grad_input_rows_f32(p, weight_scale, weights, NULL, grad_output, grad_input);
}
