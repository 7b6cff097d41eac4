/* mt_fully_connected_grad_weight_get_buffer_size: bytes of num_channels rows of an FC
 * weight gradient (twin: ir/buffer_sizes.py). */
#include "mt_nn.h"

int32_t mt_fully_connected_grad_weight_get_buffer_size(const mt_fc_params *p, int32_t num_channels)
{
    if (p == NULL || num_channels <= 0) {
        return 0;
    }
    return num_channels * p->in_c * (int32_t)sizeof(float);
}
