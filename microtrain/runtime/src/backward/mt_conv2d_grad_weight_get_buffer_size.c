/* mt_conv2d_grad_weight_get_buffer_size: bytes of the weight gradient of num_channels output
 * channels of a conv (twin: ir/buffer_sizes.py). Also serves depthwise (in_c / groups == 1). */
#include "mt_nn.h"

int32_t mt_conv2d_grad_weight_get_buffer_size(const mt_conv_params *p, int32_t num_channels)
{
    if (p == NULL || p->groups < 1 || num_channels <= 0) {
        return 0;
    }
    return num_channels * p->kernel_h * p->kernel_w * (p->in_c / p->groups) * (int32_t)sizeof(float);
}
