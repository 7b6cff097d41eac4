/*
 * mt_runtime.h: the microtrain C runtime, every public declaration in one header.
 *
 * Kernels the generated training step calls: int8 forward (bit-exact with
 * microtrain/interp/reference.py), fp32 backward (gradients w.r.t. REAL values),
 * and the fused SGD(+QAS) update of int8 weights / int32 biases.
 *
 * Conventions (shared with the IR, see shared/DESIGN.md):
 *   - batch 1; activations NHWC stored as [H][W][C]; weights OHWI stored as
 *     [O][KH][KW][I] with I = input channels per group; int32 bias [O].
 *   - real value of an int8 activation = s * (q - z); of an int8 weight in output
 *     channel c = s_w[c] * q (symmetric, zero point 0).
 *   - requantization only through mt_requantize (the C twin of microtrain.quant.requantize);
 *     multipliers/shifts are compile-time constants computed by Python
 *     (interp/reference.py output_multipliers, add_params, avg_pool_params).
 *   - C99, no allocation, no printing, no globals, no host-only calls. Built with
 *     -std=c99 -Wall -Wextra -Werror -ffp-contract=off (gcc and arm-none-eabi-gcc).
 *     Float kernels evaluate exactly the expressions documented here, in the documented
 *     order (no FMA contraction), so results are reproducible across targets.
 *   - every kernel returns mt_status; it checks its parameters before touching memory
 *     and writes nothing when it returns an error.
 *   - "kept channels": sub-tensor updates train a list of output channels (UpdateScheme
 *     weight_layers[].channels). mt_channels selects a contiguous range [begin, end) of
 *     that list, so the generated code can compute, apply and discard the gradient of one
 *     output channel at a time (the reordering that keeps no full gradient tensor alive).
 *
 * Buffer size queries (mt_*_get_buffer_size) return BYTES and have Python twins in
 * microtrain/ir/buffer_sizes.py. The reference kernels need no scratch memory; the queries
 * size the caller-provided buffers whose size is not obvious (masks, gradient chunks,
 * sliced saved activations).
 */
#ifndef MT_RUNTIME_H
#define MT_RUNTIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------ */
/* Status                                                                               */
/* ------------------------------------------------------------------------------------ */

typedef enum {
    MT_OK = 0,
    MT_ERR_NULL = -1,     /* a required pointer is NULL */
    MT_ERR_SHAPE = -2,    /* dimensions inconsistent (e.g. output size != conv formula) */
    MT_ERR_PARAM = -3,    /* a parameter out of its range (shift, zero point, act range, mode, channel index) */
    MT_ERR_OVERFLOW = -4  /* the int32 accumulator bound of the kernel would be exceeded (layer too large) */
} mt_status;

/* ------------------------------------------------------------------------------------ */
/* Parameters                                                                           */
/* ------------------------------------------------------------------------------------ */

/* CONV2D (general, grouped, depthwise, pointwise), forward and backward.
 * out_h must equal (in_h + pad_top + pad_bottom - kernel_h) / stride_h + 1 (likewise w),
 * in_c and out_c must be multiples of groups; weights are [out_c][kernel_h][kernel_w][in_c/groups].
 * Backward kernels use only the shape fields (and input_zero_point where they read the
 * saved int8 input). */
typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left, pad_bottom, pad_right;
    int32_t groups;
    int32_t input_zero_point;   /* z_x in [-128, 127]; padded positions hold z_x (real 0) */
    int32_t output_zero_point;  /* z_y in [-128, 127] */
    int32_t act_min, act_max;   /* clamp range, -128 <= act_min <= act_max <= 127 */
} mt_conv_params;

/* FULLY_CONNECTED: input [in_c], weights [out_c][in_c], bias [out_c], output [out_c]. */
typedef struct {
    int32_t in_c, out_c;
    int32_t input_zero_point, output_zero_point;
    int32_t act_min, act_max;
} mt_fc_params;

/* Per-output-channel requantization: M_c = s_x*s_w[c]/s_y ~= multiplier[c] * 2^(shift[c]-31),
 * from interp/reference.py output_multipliers (microtrain.quant.quantize_multiplier):
 * multiplier[c] in {0} U [2^30, 2^31), shift[c] in [-31, 30]. */
typedef struct {
    const int32_t *multiplier;  /* [out_c] */
    const int32_t *shift;       /* [out_c] */
    const int32_t *pack;        /* NULL, or the conv's set-up pack (mt_conv_pack_s8): frozen weights only */
} mt_per_channel_quant;

/* TFLite int8 ADD, fields exactly as interp/reference.py add_params returns them. */
typedef struct {
    int32_t size;                        /* number of elements */
    int32_t a_zero_point, b_zero_point, output_zero_point;
    int32_t left_shift;                  /* 20 */
    int32_t a_multiplier, a_shift;
    int32_t b_multiplier, b_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
} mt_add_params;

/* GLOBAL_AVG_POOL: input [h][w][c] -> output [c]; (multiplier, shift) from avg_pool_params. */
typedef struct {
    int32_t in_h, in_w, c;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;
    int32_t act_min, act_max;
} mt_avg_pool_params;

/* A range of kept output channels. index[0..count) are the kept output channel indices
 * (distinct, each in [0, out_c)); index == NULL means "all channels", i.e. index[j] = j.
 * A kernel taking mt_channels processes list entries j in [begin, end) and its gradient
 * buffer holds (end - begin) rows, row r belonging to output channel index[begin + r]. */
typedef struct {
    const int32_t *index;
    int32_t count;
    int32_t begin, end;  /* 0 <= begin <= end <= count */
} mt_channels;

/* Rounding of the on-device update (shared/COMMON rule, Python twin microtrain/runtime/rounding.py). */
typedef enum {
    MT_ROUND_NEAREST = 0,    /* floor(v + 0.5f) */
    MT_ROUND_STOCHASTIC = 1  /* floor(v + u), u = mt_update_noise(...) / 2^24 */
} mt_rounding;

/* SGD step parameters shared by the update kernels, and the optimizer state of the tensor:
 * gradient accumulation over K samples and momentum, each optional (NULL buffer = off). A
 * buffer holds one float per kept element, list entry j of the kept channels at row j
 * ([count][channel_size]; biases [count]), zero before the first sample. Per element, with g
 * the gradient of this sample (Python twin: microtrain/runtime/rounding.py optimizer_direction):
 *   accum:     a = accum + g;  apply == 0: accum = a, and nothing else happens (no update);
 *              apply == 1: accum = 0, g = a * accum_scale           (accum_scale = float32(1/K))
 *   momentum:  m = momentum_coef * momentum + g;  momentum = m;  g = m
 *   then the update of g with lr and the rounding below. */
typedef struct {
    float lr;            /* learning rate of this step */
    int32_t rounding;    /* mt_rounding */
    uint32_t seed;       /* stochastic rounding seed */
    uint32_t step;       /* 0-based update counter (updates, not samples, when accumulating) */
    uint32_t tensor_id;  /* index of the tensor in the scheme's order of trained tensors */
    float *accum;        /* gradient accumulation buffer, or NULL (K = 1) */
    int32_t apply;       /* with accum: 1 on the K-th sample (update), 0 before (accumulate only) */
    float accum_scale;   /* with accum: float32(1/K) */
    float *momentum;     /* momentum buffer, or NULL (plain SGD) */
    float momentum_coef; /* with momentum: mu in [0, 1) */
} mt_update_params;

/* Learning-rate schedule of on-device training (Python twin microtrain/runtime/schedule.py). */
typedef enum {
    MT_LR_CONSTANT = 0,  /* base_lr at every update */
    MT_LR_COSINE = 1     /* linear warm-up, then cosine decay to 0 at update `total` */
} mt_lr_kind;

typedef struct {
    int32_t kind;     /* mt_lr_kind */
    float base_lr;
    uint32_t warmup;  /* MT_LR_COSINE: updates of linear warm-up */
    uint32_t total;   /* MT_LR_COSINE: updates of the whole schedule (rate 0 from there on); 0 = open-ended */
} mt_lr_schedule;

/* ------------------------------------------------------------------------------------ */
/* math/ (float32 by fixed sequences of IEEE operations, no libm: the same bits on every  */
/* target; Python twins in microtrain/runtime/fmath.py)                                  */
/* ------------------------------------------------------------------------------------ */

/* e^x within 2 ulp; 0 for x < -86.5, +infinity for x > 88.7, NaN for NaN. */
float mt_expf(float x);

/* log(x) within 2 ulp; NaN for x < 0 or NaN, -infinity for 0, +infinity for +infinity. */
float mt_logf(float x);

/* cos(pi * u) for u clamped to [0, 1], within 2e-7, exactly 1 at 0 and -1 at 1; NaN for NaN. */
float mt_cos_pi(float u);

/* floor(v), the bits of C99 floorf (+-0, NaN, +-inf and |v| >= 2^23 returned as they are). */
float mt_floorf(float v);

/* ------------------------------------------------------------------------------------ */
/* quant/                                                                               */
/* ------------------------------------------------------------------------------------ */

/* acc * M in fixed point; the one C definition of microtrain.quant.requantize:
 *   left = max(shift, 0), right = max(-shift, 0)
 *   x = saturate_int32(acc * 2^left)                       (deviation from TFLite: saturated)
 *   x = SaturatingRoundingDoublingHighMul(x, multiplier)  (nudge, truncate toward zero;
 *                                                           INT32_MIN*INT32_MIN -> INT32_MAX)
 *   return RoundingDivideByPOT(x, right)                   (round half away from zero)
 * Preconditions: shift in [-31, 30]; multiplier >= 0. */
int32_t mt_requantize(int32_t acc, int32_t multiplier, int32_t shift);

/* The counter-based noise of stochastic rounding, a 24-bit integer in [0, 2^24):
 *   h = fmix32(seed ^ (tensor_id * 0x9E3779B9));  h = fmix32(h ^ step);  h = fmix32(h ^ index);
 *   return h >> 8;     (fmix32 = murmur3 finalizer; all arithmetic mod 2^32) */
uint32_t mt_update_noise(uint32_t seed, uint32_t step, uint32_t tensor_id, uint32_t index);

/* The update rounding of a float32 value v, before saturation, returned as a float:
 *   MT_ROUND_NEAREST:    floorf(v + 0.5f)
 *   MT_ROUND_STOCHASTIC: floorf(v + u), u = (float)mt_update_noise(seed, step, tensor_id, index) * 2^-24
 * (the additions are float32 operations). Any other mode returns v unchanged. */
float mt_round_update(float v, int32_t rounding, uint32_t seed, uint32_t step, uint32_t tensor_id,
                      uint32_t index);

/* ------------------------------------------------------------------------------------ */
/* forward/ (int8, bit-exact with interp/reference.py EVAL_RULES)                       */
/* ------------------------------------------------------------------------------------ */

/* CONV2D, any groups. input [in_h][in_w][in_c], weights [out_c][kh][kw][in_c/groups],
 * bias [out_c] (NULL = zeros), output [out_h][out_w][out_c].
 * Requires kernel_h*kernel_w*(in_c/groups) <= 65536 (int32 accumulator bound). */
mt_status mt_conv2d_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                       const int8_t *weights, const int32_t *bias, int8_t *output);

/* Depthwise CONV2D: groups == in_c == out_c (weights [c][kh][kw][1]); same result as mt_conv2d_s8. */
mt_status mt_depthwise_conv2d_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output);

/* Pointwise CONV2D fast path: kernel 1x1, stride 1, no padding, groups 1 (weights
 * [out_c][in_c]); bit-exact with mt_conv2d_s8. Requires in_c <= 65536. */
mt_status mt_pointwise_conv2d_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                 const int8_t *weights, const int32_t *bias, int8_t *output);

/* The same with the weight rows given one by one: row oc ([in_c] int8) is rows[oc] when rows
 * is not NULL (weights is then not read and may be NULL), else weights + oc * in_c. A
 * partially trained weight keeps only its trained rows in RAM and its frozen rows const in
 * flash; rows is a const table in flash pointing into both. Bit-exact with mt_pointwise_conv2d_s8. */
mt_status mt_pointwise_conv2d_rows_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                      const int8_t *weights, const int8_t *const *rows, const int32_t *bias,
                                      int8_t *output);

/* The set-up pack of a frozen conv: what its fast int8 forward computes per call from the weights,
 * bias and quantization alone, computed once (at compile time by the code generator, which calls
 * this function and writes the words as a const array in flash) and passed as q->pack to the
 * kernels. Groups 1 (mt_pointwise_conv2d_s8, the fused blocks' 1x1 / small-window expansion and
 * projection): per channel pair the weight-row sums of the folded input zero point and the
 * fast-store constants, with extended = 1 also the weight rows as the DSP asm reads them (int16:
 * 2 bytes per weight, no per-call extension), with extended = 2 those rows alone (frozen weights, a
 * trained bias: the store constants are then derived per call); depthwise with a square 3x3 / 5x5 / 7x7 kernel
 * (mt_depthwise_conv2d_s8, the fused blocks' depthwise): per channel the packed taps and store
 * constants. A kernel given q->pack = NULL computes the same words per call; both give the same
 * integers (a pack of another conv's kind or row length is ignored). Format (int32 words, the same
 * on every host and target): mt_nn_fast.h, mt_nn_dw.h. Other convs: size 0, MT_ERR_PARAM; pack:
 * mt_conv_pack_get_size(p, extended) bytes, 4-byte aligned. */
int32_t mt_conv_pack_get_size(const mt_conv_params *p, int32_t extended);
mt_status mt_conv_pack_s8(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *weights,
                          const int32_t *bias, int32_t extended, int32_t *pack);

/* FULLY_CONNECTED: input [in_c], weights [out_c][in_c], bias [out_c] (NULL = zeros), output [out_c].
 * Requires in_c <= 65536. */
mt_status mt_fully_connected_s8(const mt_fc_params *p, const mt_per_channel_quant *q, const int8_t *input,
                                const int8_t *weights, const int32_t *bias, int8_t *output);

/* TFLite int8 ADD of two tensors of p->size elements; output may alias a or b. */
mt_status mt_add_s8(const mt_add_params *p, const int8_t *a, const int8_t *b, int8_t *output);

/* GLOBAL_AVG_POOL: input [in_h][in_w][c] -> output [c]. Requires in_h*in_w <= 2^23. */
mt_status mt_global_avg_pool_s8(const mt_avg_pool_params *p, const int8_t *input, int8_t *output);

/* ------------------------------------------------------------------------------------ */
/* backward/ (fp32; gradients with respect to REAL values)                              */
/* ------------------------------------------------------------------------------------ */

/* out[i] = (float)(x[i] - zero_point) * scale, scale = float32(s). out may not alias x. */
mt_status mt_dequantize_s8_f32(const int8_t *x, int32_t n, float scale, int32_t zero_point, float *out);

/* Softmax cross-entropy of logits [n] (real, fp32) against label, numerically stable:
 *   m = max_i logits[i]; e_i = mt_expf(logits[i] - m); S = sum_i e_i (sequential, i ascending)
 *   *loss = mt_logf(S) - (logits[label] - m)
 *   grad_logits[i] = e_i * (1.0f / S) - (i == label)   (e_i recomputed; grad_logits may be NULL)
 * grad_logits may alias logits. */
mt_status mt_softmax_cross_entropy_f32(const float *logits, int32_t n, int32_t label, float *loss,
                                       float *grad_logits);

/* Mean squared error of a reconstruction (an autoencoder's output against its own int8 input):
 *   t_i = (float)(target[i] - target_zero) * target_scale;  d_i = pred[i] - t_i
 *   S = sum_i d_i * d_i (sequential, i ascending, from 0.0f);  *loss = S * (1.0f / (float)n)
 *   grad[i] = d_i * (2.0f / (float)n)   (grad may be NULL; it may alias pred)
 * (Python twin: microtrain/runtime/losses.py mean_squared_error.) */
mt_status mt_mean_squared_error_f32(const float *pred, const int8_t *target, int32_t n, float target_scale,
                                    int32_t target_zero, float *loss, float *grad);

/* Bytes of the 1-bit mask of n elements: (n + 7) / 8. */
int32_t mt_clamp_mask_get_buffer_size(int32_t n);

/* Pack the clamp derivative of an int8 output y [n] into a 1-bit mask: bit i (byte i/8,
 * bit i%8, LSB first) is 1 iff act_min < y[i] < act_max. Unused high bits of the last byte are 0. */
mt_status mt_clamp_mask_s8(const int8_t *y, int32_t n, int32_t act_min, int32_t act_max, uint8_t *mask);

/* grad_out[i] = bit i of mask ? grad_in[i] : 0.0f. grad_out may alias grad_in (in place). */
mt_status mt_apply_mask_f32(const float *grad_in, const uint8_t *mask, int32_t n, float *grad_out);

/* out[i] = a[i] + b[i] (accumulating the gradients of a tensor used twice, e.g. a residual).
 * out may alias a or b. */
mt_status mt_add_f32(const float *a, const float *b, int32_t n, float *out);

/* Gradient w.r.t. the real conv input, any groups. grad_output [out_h][out_w][out_c] (real),
 * weights int8 OHWI with per-channel scales weight_scale[out_c]; writes all of
 * grad_input [in_h][in_w][in_c]. Exact evaluation (scatter, in this order):
 *   grad_input = 0
 *   for oy, ox (ascending), for oc (ascending):  gs = grad_output[oy][ox][oc] * weight_scale[oc]
 *     for ky, kx, i inside the input:  grad_input[iy][ix][g*I + i] += gs * (float)w[oc][ky][kx][i]
 * grad_input must not alias grad_output. */
mt_status mt_conv2d_grad_input_f32(const mt_conv_params *p, const float *weight_scale, const int8_t *weights,
                                   const float *grad_output, float *grad_input);

/* The same for depthwise (groups == in_c == out_c); bit-exact with mt_conv2d_grad_input_f32. */
mt_status mt_depthwise_conv2d_grad_input_f32(const mt_conv_params *p, const float *weight_scale,
                                             const int8_t *weights, const float *grad_output, float *grad_input);

/* Bytes of the scratch of mt_depthwise_conv2d_grad_input_inplace_f32: in_h * in_w * sizeof(float). */
int32_t mt_depthwise_conv2d_grad_input_inplace_get_buffer_size(const mt_conv_params *p);

/* Depthwise input gradient in place, for a conv whose input and output have the same shape
 * (out_h == in_h, out_w == in_w; else MT_ERR_SHAPE): grad holds the output gradient on entry
 * and the input gradient on return, bit-exact with mt_depthwise_conv2d_grad_input_f32.
 * scratch: one channel plane (the size query above), not overlapping grad. */
mt_status mt_depthwise_conv2d_grad_input_inplace_f32(const mt_conv_params *p, const float *weight_scale,
                                                     const int8_t *weights, float *grad, float *scratch);

/* Pointwise fast path (kernel 1x1, stride 1, no padding, groups 1) of
 * mt_conv2d_grad_input_f32: the same expression and summation order, hence bit-exact. */
mt_status mt_pointwise_conv2d_grad_input_f32(const mt_conv_params *p, const float *weight_scale,
                                             const int8_t *weights, const float *grad_output, float *grad_input);

/* The same with the weight rows given one by one (rows[oc] when rows is not NULL, as
 * mt_pointwise_conv2d_rows_s8); bit-exact with mt_pointwise_conv2d_grad_input_f32. */
mt_status mt_pointwise_conv2d_grad_input_rows_f32(const mt_conv_params *p, const float *weight_scale,
                                                  const int8_t *weights, const int8_t *const *rows,
                                                  const float *grad_output, float *grad_input);

/* Bytes of the weight-gradient buffer of num_channels output channels of a conv:
 * num_channels * kernel_h * kernel_w * (in_c / groups) * sizeof(float). */
int32_t mt_conv2d_grad_weight_get_buffer_size(const mt_conv_params *p, int32_t num_channels);

/* Gradient w.r.t. the real weights of the kept output channels ch->index[begin..end), any groups.
 * input: the saved int8 input [in_h][in_w][in_c] (scale input_scale, zero point p->input_zero_point);
 * grad_output [out_h][out_w][out_c] (only the selected channels are read);
 * grad_weight [(end-begin)][kh][kw][in_c/groups] (written completely). Exact evaluation:
 *   for each selected oc: acc[ky][kx][i] = 0
 *     for oy, ox (ascending): g = grad_output[oy][ox][oc]
 *       for ky, kx, i inside the input: acc[ky][kx][i] += g * (float)(x[iy][ix][g0 + i] - z_x)
 *     grad_weight[row][ky][kx][i] = acc[ky][kx][i] * input_scale
 * (acc lives in grad_weight itself: no scratch.) */
mt_status mt_conv2d_grad_weight_f32(const mt_conv_params *p, float input_scale, const int8_t *input,
                                    const float *grad_output, const mt_channels *ch, float *grad_weight);

/* Depthwise weight gradient (groups == in_c == out_c), same expression as above. If
 * input_sliced is 0, input is the full [in_h][in_w][in_c] tensor; if 1, input holds only the
 * kept channels, [in_h][in_w][ch->count] with list entry j at channel j (what
 * mt_gather_channels_s8 saves), so only the kept channels' activations need to be saved. */
mt_status mt_depthwise_conv2d_grad_weight_f32(const mt_conv_params *p, float input_scale, const int8_t *input,
                                              int32_t input_sliced, const float *grad_output,
                                              const mt_channels *ch, float *grad_weight);

/* Pointwise fast path (kernel 1x1, stride 1, no padding, groups 1) of
 * mt_conv2d_grad_weight_f32: the same expression and summation order, hence bit-exact. */
mt_status mt_pointwise_conv2d_grad_weight_f32(const mt_conv_params *p, float input_scale, const int8_t *input,
                                              const float *grad_output, const mt_channels *ch, float *grad_weight);

/* Bytes of a sliced copy of the kept channels: spatial * ch->count. */
int32_t mt_gather_channels_get_buffer_size(int32_t spatial, int32_t count);

/* Save the kept channels of an int8 activation x [spatial][c]: out[s][j] = x[s][index[j]],
 * j in [0, ch->count) (begin/end ignored). */
mt_status mt_gather_channels_s8(const int8_t *x, int32_t spatial, int32_t c, const mt_channels *ch, int8_t *out);

/* Gradient w.r.t. the real FC input: grad_input[i] = sum_o (grad_output[o] * weight_scale[o]) * (float)w[o][i],
 * summed over o ascending starting from 0.0f. */
mt_status mt_fully_connected_grad_input_f32(const mt_fc_params *p, const float *weight_scale, const int8_t *weights,
                                            const float *grad_output, float *grad_input);

/* Bytes of the FC weight-gradient buffer of num_channels rows: num_channels * in_c * sizeof(float). */
int32_t mt_fully_connected_grad_weight_get_buffer_size(const mt_fc_params *p, int32_t num_channels);

/* Gradient w.r.t. the real FC weights of the selected rows:
 * grad_weight[row][i] = grad_output[o] * ((float)(x[i] - z_x) * input_scale), o = index[begin + row]. */
mt_status mt_fully_connected_grad_weight_f32(const mt_fc_params *p, float input_scale, const int8_t *input,
                                             const float *grad_output, const mt_channels *ch, float *grad_weight);

/* Gradient w.r.t. the real bias of the selected channels, from grad_output [spatial][c]:
 * grad_bias[row] = sum_s grad_output[s][o] (s ascending from 0.0f), o = index[begin + row].
 * (FC: spatial = 1.) */
mt_status mt_bias_grad_f32(const float *grad_output, int32_t spatial, int32_t c, const mt_channels *ch,
                           float *grad_bias);

/* Gradient of GLOBAL_AVG_POOL w.r.t. its real input: grad_input[y][x][c] = grad_output[c] / (float)(h*w). */
mt_status mt_global_avg_pool_grad_f32(int32_t h, int32_t w, int32_t c, const float *grad_output,
                                      float *grad_input);

/* ------------------------------------------------------------------------------------ */
/* update/ (fused SGD + QAS with the documented rounding)                               */
/* ------------------------------------------------------------------------------------ */

/* In-place update of the int8 weights of the selected output channels. channel_size =
 * elements per output channel (kh*kw*I for conv, in_c for FC). grad [(end-begin)][channel_size]
 * = gradient w.r.t. the REAL weights (from a *_grad_weight_f32 kernel with the same ch).
 * factor[o] (indexed by the full output channel o) = float32(1/s_w[o]) with QAS, float32(s_w[o])
 * without. For each selected channel o = index[j] and element e, with i = o*channel_size + e (the
 * flat index in the FULL tensor, whatever the storage), g = grad[j - begin][e] taken through the
 * optimizer state (mt_update_params, element j*channel_size + e of its buffers) when there is one:
 *   v = (float)w - (u->lr * g) * factor[o]                  (float32, in this order)
 *   r = mt_round_update(v, u->rounding, u->seed, u->step, u->tensor_id, i)
 *   w = r < -127 ? -127 : r > 127 ? 127 : (int8_t)r        (NaN leaves w unchanged)
 * weights_sliced = 0: weights is the full [out_c][channel_size] tensor; 1: weights holds only
 * the kept channels, [ch->count][channel_size], list entry j at row j. */
mt_status mt_sgd_update_s8(int8_t *weights, int32_t weights_sliced, int32_t channel_size, const float *factor,
                           const float *grad, const mt_channels *ch, const mt_update_params *u);

/* In-place update of the int32 biases of the selected channels (i = o; optimizer state element j):
 *   v = (float)b - (u->lr * g) * factor[o];  r = mt_round_update(v, ..., i = o)
 *   b = r >= 2^31 ? INT32_MAX : r < -2^31 ? INT32_MIN : (int32_t)r    (NaN leaves b unchanged)
 * factor[o] = float32(1/(s_w[o]*s_x)) with QAS, float32(s_w[o]*s_x) without.
 * grad [(end-begin)] from mt_bias_grad_f32 with the same ch; bias is the full [out_c] vector. */
mt_status mt_sgd_update_s32(int32_t *bias, const float *factor, const float *grad, const mt_channels *ch,
                            const mt_update_params *u);

/* The learning rate of update t (0-based) under schedule s:
 *   MT_LR_CONSTANT: base_lr
 *   MT_LR_COSINE:   t < warmup:       base_lr * ((float)(t + 1) / (float)warmup)
 *                   total <= warmup:  base_lr   (no length known: warm-up, then constant)
 *                   otherwise:        base_lr * (0.5f * (1.0f + mt_cos_pi((float)(t - warmup) / (float)(total - warmup))))
 *                                     (mt_cos_pi clamps at 1: rate 0 from update `total` on)
 * 0.0f for a NULL schedule or an unknown kind. */
float mt_learning_rate(const mt_lr_schedule *s, uint32_t t);

/* ------------------------------------------------------------------------------------ */
/* forward/ fused frozen block (compiler/fuse_frozen_blocks.py, ir/fused_blocks.py)       */
/* ------------------------------------------------------------------------------------ */

/* FUSED_INVERTED_BOTTLENECK: [expand conv, groups 1] -> depthwise conv -> 1x1 projection
 * [-> residual ADD with the block input], each stage's fields exactly as for its own kernel
 * (twins.inverted_bottleneck_params). expand/expand_q are ignored when has_expand == 0 and
 * add when has_residual == 0; shortcut_first: the block input is the ADD's operand a. */
typedef struct {
    int32_t has_expand;
    mt_conv_params expand;
    mt_per_channel_quant expand_q;
    mt_conv_params depthwise;
    mt_per_channel_quant depthwise_q;
    mt_conv_params project;
    mt_per_channel_quant project_q;
    int32_t has_residual;
    int32_t shortcut_first;
    mt_add_params add;
} mt_inverted_bottleneck_params;

/* Scratch bytes (layout in mt_nn_ib.h): the pre-extended weight rows of a channel pair, a ring
 * of min(kernel_h, in_h) channel-planar expanded rows with the depthwise padding (with an
 * expansion), a strip of expansion patches (a small-window conv expansion), a strip of depthwise
 * output and one of projection output (with a residual); strips are MT_NN_IB_STRIP pixels. */
int32_t mt_inverted_bottleneck_get_buffer_size(const mt_inverted_bottleneck_params *p);

/* The block, row-streamed through the scratch ring; bit-exact with its ops run one by one.
 * Biases may be NULL (zeros). output may equal input when no later row reads input bytes
 * an earlier output row overwrites (compiler/inplace.py), else MT_ERR_PARAM;
 * scratch may not overlap either. */
mt_status mt_inverted_bottleneck_s8(const mt_inverted_bottleneck_params *p, const int8_t *input,
                                    const int8_t *expand_weights, const int32_t *expand_bias,
                                    const int8_t *depthwise_weights, const int32_t *depthwise_bias,
                                    const int8_t *project_weights, const int32_t *project_bias, int8_t *output,
                                    int8_t *scratch);

/* Delivers input rows [first_row, first_row + rows) of a streamed input to dst (row-major,
 * in_w x in_c int8 each): a line-scan sensor, camera lines by DMA, or a file. */
typedef void (*mt_read_rows_fn)(int8_t *dst, int32_t first_row, int32_t rows, void *ctx);

/* mt_inverted_bottleneck_s8 with the block input streamed: rows are pulled through
 * read_rows into input_ring (min(expand.kernel_h, expand.in_h) rows), each once, in order.
 * Requires has_expand and no residual (MT_ERR_PARAM otherwise); bit-exact with the
 * non-streaming kernel; scratch as mt_inverted_bottleneck_get_buffer_size. */
mt_status mt_inverted_bottleneck_stream_s8(const mt_inverted_bottleneck_params *p, mt_read_rows_fn read_rows,
                                           void *ctx, int8_t *input_ring, const int8_t *expand_weights,
                                           const int32_t *expand_bias, const int8_t *depthwise_weights,
                                           const int32_t *depthwise_bias, const int8_t *project_weights,
                                           const int32_t *project_bias, int8_t *output, int8_t *scratch);

/* ------------------------------------------------------------------------------------ */
/* backward/ fused inverted-bottleneck gradient (compiler/stream_block_grads.py,         */
/* ir/block_grads.py)                                                                    */
/* ------------------------------------------------------------------------------------ */

/* INVERTED_BOTTLENECK_GRAD: the backward through expand 1x1 (I -> C) -> depthwise (C) ->
 * project 1x1 (C -> O), one expanded channel at a time. */
typedef struct {
    mt_conv_params depthwise;   /* the block's depthwise conv, in_c = out_c = groups = C */
    int32_t project_out_c;      /* O */
    int32_t expand_in_c;        /* I: channels of the block input */
    int32_t input_zero_point;   /* z of the saved block input (expansion weight gradient) */
    float input_scale;          /* s of the saved block input */
    int32_t channels_per_pass;  /* expanded channels per pass, 1 to 4 (scratch planes of each kind) */
} mt_inverted_bottleneck_grad_params;

/* The in-kernel SGD update of the expansion weights' kept rows, as mt_sgd_update_s8 does it
 * with mt_channels {index, count, j, j + 1}: row j of the gradient goes to grad_row [I] and
 * is applied at once. */
typedef struct {
    int8_t *weights;            /* storage as mt_sgd_update_s8 takes it */
    int32_t weights_sliced;     /* 1: weights holds the kept rows only (list entry j at row j) */
    const float *factor;        /* [C] QAS factors */
    const int32_t *index;       /* kept channels, distinct (NULL: all C) */
    int32_t count;
    mt_update_params u;
    float *grad_row;            /* [I] */
} mt_expand_update;

/* Scratch bytes: channels_per_pass * (max(depthwise out_h * out_w, expand_in_c) + in_h * in_w) *
 * sizeof(float), a plane of each kind per channel of a pass (with 4, the 1x1 stages keep 4 running
 * sums in registers; the output-side planes, dead once the input-side ones exist, then hold the
 * pass's kept weight-gradient rows, summed together); 0 when channels_per_pass is not in [1, 4]. */
int32_t mt_inverted_bottleneck_grad_get_buffer_size(const mt_inverted_bottleneck_grad_params *p);

/* For each expanded channel c ascending (channels_per_pass at a time), bit-exact with the unfused
 * kernels run one by one:
 *   a[n]  = sum_o (grad_output[n][o] * project_scale[o]) * Wp[o][c]   (o ascending, from 0.0f;
 *           mt_pointwise_conv2d_grad_input_f32), then masked by depthwise_mask (NHWC bit n*C+c);
 *   depthwise_bias_grad[c] = sum_n a[n] (n ascending, from 0.0f; mt_bias_grad_f32);
 *   b     = depthwise input gradient of plane a (output pixels ascending, as
 *           mt_depthwise_conv2d_grad_input_f32), masked by expand_mask; expand_bias_grad[c] likewise;
 *   grad_input[n][i] += (b[n] * expand_scale[c]) * We[c][i]   (c ascending, from 0.0f);
 *   if c is kept: grad_row[i] = (sum_n b[n] * (float)(input[n][i] - z)) * input_scale
 *           (mt_pointwise_conv2d_grad_weight_f32), then mt_sgd_update_s8 of that row.
 * Row c of We is read before it is updated, as the unfused order reads the old weights. We row
 * c is expand_rows[c] when expand_rows is not NULL, else expand_weights + c * I. grad_input,
 * the bias gradients and update may be NULL (not needed); input is read only with update.
 * scratch: the size query above, overlapping nothing else. */
mt_status mt_inverted_bottleneck_grad_f32(const mt_inverted_bottleneck_grad_params *p, const float *grad_output,
                                          const int8_t *project_weights, const float *project_scale,
                                          const uint8_t *depthwise_mask, const int8_t *depthwise_weights,
                                          const float *depthwise_scale, const uint8_t *expand_mask,
                                          const int8_t *expand_weights, const int8_t *const *expand_rows,
                                          const float *expand_scale, const int8_t *input,
                                          const mt_expand_update *update, float *grad_input,
                                          float *depthwise_bias_grad, float *expand_bias_grad, float *scratch);

/* ------------------------------------------------------------------------------------ */
/* forward/ and backward/ of the window and copy ops of imported .tflite models          */
/* (TFLite Micro's int8 reference kernels; Python: interp/window_ops.py, quant.py) */
/* ------------------------------------------------------------------------------------ */

/* AVG_POOL2D / MAX_POOL2D: input [in_h][in_w][c] -> output [out_h][out_w][c]. The window of
 * output (oy, ox) covers rows oy*stride_h - pad_top + [0, filter_h) (likewise columns),
 * clipped to the input; input and output share one quantization (no requantization). */
typedef struct {
    int32_t in_h, in_w, c;
    int32_t out_h, out_w;
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t act_min, act_max;   /* clamp range, -128 <= act_min <= act_max <= 127 */
    int32_t count_include_pad;  /* AVG_POOL2D: 1 divides by filter_h*filter_w, 0 (TFLM) by the clipped count */
} mt_pool_params;

/* PAD of an [in_h][in_w][in_c] tensor: output [pad_top+in_h+pad_bottom][pad_left+in_w+pad_right]
 * [pad_front+in_c+pad_back], the input at offset (pad_top, pad_left, pad_front), pad_value elsewhere. */
typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t pad_top, pad_bottom, pad_left, pad_right, pad_front, pad_back;
    int32_t pad_value;  /* int8 */
} mt_pad_params;

/* One input of a CONCAT, seen as [outer][in_inner] placed at column offset of [outer][out_inner]. */
typedef struct {
    int32_t outer, in_inner, out_inner, offset;
} mt_concat_params;

/* SOFTMAX (int8 in, int8 out with scale 1/256 and zero point -128) of rows of size elements;
 * constants from quant_softmax.softmax_params: input_left_shift >= 0, diff_min <= 0. */
typedef struct {
    int32_t rows, size;
    int32_t input_multiplier, input_left_shift, diff_min;
} mt_softmax_params;

/* AVG_POOL2D, TFLM's int8 kernel: acc = sum of the int8 values of the clipped window, n = their
 * count (or filter_h*filter_w with count_include_pad); y = acc > 0 ? (acc + n/2) / n
 * : (acc - n/2) / n (C division), clamped. Requires filter_h*filter_w <= 2^23. */
mt_status mt_avg_pool2d_s8(const mt_pool_params *p, const int8_t *input, int8_t *output);

/* MAX_POOL2D, TFLM's int8 kernel: the maximum of the clipped window (-128 if empty), clamped. */
mt_status mt_max_pool2d_s8(const mt_pool_params *p, const int8_t *input, int8_t *output);

/* PAD (TFLM's int8 kernel). output may not alias input. */
mt_status mt_pad_s8(const mt_pad_params *p, const int8_t *input, int8_t *output);

/* One input of CONCAT: output[k * out_inner + offset + j] = input[k * in_inner + j]. Called once
 * per input (offsets ascending), it builds the concatenation; input may not overlap output. */
mt_status mt_concat_part_s8(const mt_concat_params *p, const int8_t *input, int8_t *output);

/* SOFTMAX, TFLM's int8 reference kernel (gemmlowp fixed point), bit-exact with
 * microtrain/quant.py softmax_s8. output may not alias input. */
mt_status mt_softmax_s8(const mt_softmax_params *p, const int8_t *input, int8_t *output);

/* Gradient of AVG_POOL2D w.r.t. its real input (rounding straight-through):
 *   grad_input = 0; for oy, ox ascending, for c: share = grad_output[oy][ox][c] / (float)n
 *     (n the forward's divisor); grad_input[y][x][c] += share for y, x of the clipped window, ascending. */
mt_status mt_avg_pool2d_grad_f32(const mt_pool_params *p, const float *grad_output, float *grad_input);

/* Gradient of MAX_POOL2D w.r.t. its real input, from the saved int8 input:
 *   grad_input = 0; for oy, ox ascending, for c: grad_input[first maximum of the clipped window,
 *   row-major] += grad_output[oy][ox][c]. */
mt_status mt_max_pool2d_grad_f32(const mt_pool_params *p, const int8_t *input, const float *grad_output,
                                 float *grad_input);

/* Gradient of PAD w.r.t. its input: the inner block of grad_output (a copy). */
mt_status mt_pad_grad_f32(const mt_pad_params *p, const float *grad_output, float *grad_input);

/* Gradient of one CONCAT input: grad_input[k * in_inner + j] = grad_output[k * out_inner + offset + j]. */
mt_status mt_concat_part_grad_f32(const mt_concat_params *p, const float *grad_output, float *grad_input);

/* ------------------------------------------------------------------------------------ */
/* backward/ with integer errors (--grad-dtype int8 / int16; docs/concepts.md)            */
/* ------------------------------------------------------------------------------------ */

/* A layer's error (the gradient w.r.t. its output after the clamp mask) as integer codes:
 * element i is codes[i] * 2^exponent exactly (Python twin: microtrain/runtime/grad_quant.py). */
typedef struct {
    const void *codes;  /* int8_t [n] (bits 8) or int16_t [n] (bits 16) */
    int32_t bits;       /* 8 or 16 */
    int32_t exponent;   /* in [-114, 121] */
} mt_grad_codes;

/* Mask and quantize a layer's error: d[i] = bit i of mask ? grad[i] : 0 (mask NULL: no mask),
 * m = max |d|, *exponent = e = k - 7 with m = f 2^k, f in [0.5, 1), codes[i] =
 * clamp(rint(d[i] * 2^-e), -127, 127), rint half to even; m == 0, < 2^-100 or not finite:
 * codes 0 and e = 0. codes may not alias grad. */
mt_status mt_quantize_error_s8(const float *grad, const uint8_t *mask, int32_t n, int8_t *codes, int32_t *exponent);

/* The same with 16-bit codes: e = k - 15, codes in [-32767, 32767]. */
mt_status mt_quantize_error_s16(const float *grad, const uint8_t *mask, int32_t n, int16_t *codes,
                                int32_t *exponent);

/* Bias gradient of selected channels from an integer error [spatial][c]: the int32 sum of the
 * codes over the positions, then (float)sum * 2^e (exact: float32 of the exact sum). Requires
 * spatial * 32767 <= INT32_MAX (MT_ERR_OVERFLOW otherwise). */
mt_status mt_bias_grad_err_f32(const mt_grad_codes *err, int32_t spatial, int32_t c, const mt_channels *ch,
                               float *grad_bias);

/* Weight gradient of selected output channels of a conv (any groups) from an integer error
 * [out_h][out_w][out_c]: acc = sum over positions of code * (x - z_x) in int64 (exact, so any
 * order), grad_weight[row][ky][kx][i] = (float)acc * (2^e * input_scale). Equals float32 of
 * the exact sum of d^ * (x - z_x), times input_scale (the reference's definition).
 * input_sliced 1 (depthwise only, as mt_depthwise_conv2d_grad_weight_f32): input holds only the
 * kept channels, [in_h][in_w][ch->count], list entry j at channel j. */
mt_status mt_conv2d_grad_weight_err_f32(const mt_conv_params *p, float input_scale, const int8_t *input,
                                        int32_t input_sliced, const mt_grad_codes *err, const mt_channels *ch,
                                        float *grad_weight);

/* The same for a fully-connected layer: grad_weight[row][i] = (float)(code[o] * (x[i] - z_x)) *
 * (2^e * input_scale). */
mt_status mt_fully_connected_grad_weight_err_f32(const mt_fc_params *p, float input_scale, const int8_t *input,
                                                 const mt_grad_codes *err, const mt_channels *ch, float *grad_weight);

/* Input gradient of a conv (any groups) from an integer error: mt_conv2d_grad_input_f32 on the
 * error d^ = (float)code * 2^e (exact), the same expression and order, hence bit-exact with it.
 * rows: NULL, or a split weight's row table (row oc at rows[oc], as in
 * mt_pointwise_conv2d_grad_input_rows_f32; weights is then unused and may be NULL). */
mt_status mt_conv2d_grad_input_err_f32(const mt_conv_params *p, const float *weight_scale, const int8_t *weights,
                                       const int8_t *const *rows, const mt_grad_codes *err, float *grad_input);

/* Input gradient of a fully-connected layer from an integer error: mt_fully_connected_grad_input_f32
 * on d^ = (float)code * 2^e, bit-exact with it. */
mt_status mt_fully_connected_grad_input_err_f32(const mt_fc_params *p, const float *weight_scale,
                                                const int8_t *weights, const mt_grad_codes *err, float *grad_input);

#ifdef __cplusplus
}
#endif

#endif /* MT_RUNTIME_H */
