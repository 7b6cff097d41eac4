/*
 * mt_inverted_bottleneck_get_buffer_size: scratch bytes of mt_inverted_bottleneck_s8 (and of
 * mt_inverted_bottleneck_stream_s8): the total of the layout in mt_nn_ib.h (pre-extended weight
 * rows, the ring of channel-planar expanded rows, a strip of patches, of depthwise output and of
 * projection output). Python twin: microtrain/ir/buffer_sizes.py inverted_bottleneck_get_buffer_size.
 */
#include "mt_nn_ib.h"

int32_t mt_inverted_bottleneck_get_buffer_size(const mt_inverted_bottleneck_params *p)
{
    if (p == NULL) {
        return 0;
    }
    return mt_nn_ib_layout(p).total;
}
