/*
 * mt_pointwise_conv2d_s8: int8 1x1 CONV2D, stride 1, no padding, one group, weights stored
 * contiguously [out_c][in_c]; the loop nest is mt_pointwise_conv2d_rows_s8's.
 */
#include "mt_nn.h"

mt_status mt_pointwise_conv2d_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output)
{
    if (weights == NULL) {
        return MT_ERR_NULL;
    }
    return mt_pointwise_conv2d_rows_s8(p, q, input, weights, NULL, bias, output);
}
