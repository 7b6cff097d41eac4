/* mt_gather_channels_get_buffer_size: bytes of the kept channels of an int8 activation
 * (twin: ir/buffer_sizes.py). */
#include "mt_nn.h"

int32_t mt_gather_channels_get_buffer_size(int32_t spatial, int32_t count)
{
    if (spatial <= 0 || count <= 0) {
        return 0;
    }
    return spatial * count;
}
