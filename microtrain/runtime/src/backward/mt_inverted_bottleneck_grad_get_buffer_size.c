/*
 * mt_inverted_bottleneck_grad_get_buffer_size: scratch bytes of mt_inverted_bottleneck_grad_f32,
 * the planes of one group of channels_per_pass expanded channels at the depthwise output (each at
 * least expand_in_c floats: the kept rows of the expansion's weight gradient are summed there once
 * the planes are dead) and at its input (floats); 0 when channels_per_pass is not in [1, 4].
 */
#include "mt_nn.h"

int32_t mt_inverted_bottleneck_grad_get_buffer_size(const mt_inverted_bottleneck_grad_params *p)
{
    const mt_conv_params *d;
    int32_t out_plane;
    if (p == NULL) {
        return 0;
    }
    d = &p->depthwise;
    if (d->in_h <= 0 || d->in_w <= 0 || d->out_h <= 0 || d->out_w <= 0 || p->channels_per_pass < 1 ||
        p->channels_per_pass > 4) {
        return 0;
    }
    out_plane = d->out_h * d->out_w;
    return p->channels_per_pass * ((out_plane > p->expand_in_c ? out_plane : p->expand_in_c) + d->in_h * d->in_w) *
           (int32_t)sizeof(float);
}
