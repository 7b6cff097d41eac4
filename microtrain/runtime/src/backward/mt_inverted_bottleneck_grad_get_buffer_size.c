/*
 * mt_inverted_bottleneck_grad_get_buffer_size: scratch bytes of mt_inverted_bottleneck_grad_f32,
 * one expanded channel's plane at the depthwise output and one at its input (floats).
 */
#include "mt_nn.h"

int32_t mt_inverted_bottleneck_grad_get_buffer_size(const mt_inverted_bottleneck_grad_params *p)
{
    const mt_conv_params *d;
    if (p == NULL) {
        return 0;
    }
    d = &p->depthwise;
    if (d->in_h <= 0 || d->in_w <= 0 || d->out_h <= 0 || d->out_w <= 0) {
        return 0;
    }
    return (d->out_h * d->out_w + d->in_h * d->in_w) * (int32_t)sizeof(float);
}
