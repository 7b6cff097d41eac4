/*
 * mt_pointwise_conv2d_rows_s8: int8 1x1 CONV2D, stride 1, no padding, one group: a matrix
 * product of the [H*W][in_c] input with the [out_c][in_c] weights. Bit-exact with
 * mt_conv2d_s8 (integer sums are exact, so the different loop nest changes nothing).
 * The hot kernel of MobileNet-style blocks: the inner loop is a contiguous int8 dot product.
 * Weight row oc is rows[oc] when rows is not NULL (a partially trained weight: its trained
 * rows in RAM, its frozen rows in flash), else weights + oc * in_c.
 */
#include "mt_nn_fast.h"

mt_status mt_pointwise_conv2d_rows_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                      const int8_t *weights, const int8_t *const *rows, const int32_t *bias,
                                      int8_t *output)
{
    mt_status st;

    /* read params, check consistency */
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || input == NULL ||
        (weights == NULL && rows == NULL) || output == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if (p->kernel_h != 1 || p->kernel_w != 1 || p->stride_h != 1 || p->stride_w != 1 || p->groups != 1 ||
        p->pad_top != 0 || p->pad_left != 0 || p->pad_bottom != 0 || p->pad_right != 0) {
        return MT_ERR_SHAPE;
    }
    if ((st = mt_nn_check_act(p->input_zero_point, p->output_zero_point, p->act_min, p->act_max)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_quant(q->multiplier, q->shift, p->out_c)) != MT_OK) {
        return st;
    }
    /* Accumulator bound: in_c products of magnitude <= 255*128 (mt_nn.h). */
    if (p->in_c > MT_NN_MAX_DOT_LENGTH) {
        return MT_ERR_OVERFLOW;
    }

    /* loops: output channels in pairs over pixel pairs (mt_nn_fast.h: the zero point folded
     * into the weight sums, the fast store where the channel's constants allow it) */
    {
        int32_t wbuf[MT_NN_DSP_ASM ? MT_NN_PW_EXTEND_MAX : 1]; /* the pre-extended rows of a channel pair */
        mt_nn_pointwise_fast_s8(p, q, input, p->in_c, p->in_h * p->in_w, weights, rows, bias, output, p->out_c, 1,
                                wbuf, MT_NN_DSP_ASM ? MT_NN_PW_EXTEND_MAX : 0);
    }
    return MT_OK;
}
