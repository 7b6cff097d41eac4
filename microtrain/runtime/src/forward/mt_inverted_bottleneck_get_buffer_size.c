/*
 * mt_inverted_bottleneck_get_buffer_size: scratch bytes of mt_inverted_bottleneck_s8 (and of
 * mt_inverted_bottleneck_stream_s8), the layout of mt_nn_ib.h: a ring of min(kernel_h, in_h)
 * expanded rows of the depthwise input stored channel-planar with the depthwise padding, + 4
 * bytes (only with an expansion; without one the depthwise reads the block input directly),
 * one row of depthwise output, and one row of projection output (only with a residual).
 * Python twin: microtrain/ir/buffer_sizes.py inverted_bottleneck_get_buffer_size.
 */
#include "mt_nn.h"

int32_t mt_inverted_bottleneck_get_buffer_size(const mt_inverted_bottleneck_params *p)
{
    const mt_conv_params *d;
    int32_t rows;
    if (p == NULL) {
        return 0;
    }
    d = &p->depthwise;
    rows = d->kernel_h < d->in_h ? d->kernel_h : d->in_h;
    return (p->has_expand ? rows * d->in_c * (d->pad_left + d->in_w + d->pad_right) + 4 : 0) + d->out_w * d->out_c +
           (p->has_residual ? p->project.out_w * p->project.out_c : 0);
}
