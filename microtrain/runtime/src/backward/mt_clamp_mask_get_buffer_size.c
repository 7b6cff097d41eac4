/* mt_clamp_mask_get_buffer_size: bytes of a 1-bit mask of n elements (twin: ir/buffer_sizes.py). */
#include "mt_nn.h"

int32_t mt_clamp_mask_get_buffer_size(int32_t n)
{
    return n <= 0 ? 0 : (n + 7) / 8;
}
