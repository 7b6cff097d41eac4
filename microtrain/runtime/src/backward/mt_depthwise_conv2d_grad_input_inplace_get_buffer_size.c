/*
 * mt_depthwise_conv2d_grad_input_inplace_get_buffer_size: scratch bytes of the in-place
 * depthwise input gradient, one channel plane of floats.
 */
#include "mt_nn.h"

int32_t mt_depthwise_conv2d_grad_input_inplace_get_buffer_size(const mt_conv_params *p)
{
    if (p == NULL || p->in_h <= 0 || p->in_w <= 0) {
        return 0;
    }
    return p->in_h * p->in_w * (int32_t)sizeof(float);
}
