/*
 * mt_nn.h: internal helpers of the microtrain runtime (not part of the public API).
 *
 * Parameter checks shared by the kernels, the saturating bias add, the offset+clamp
 * store and the murmur3 finalizer. Everything here is static inline so each kernel file
 * stays self-contained (the code generator copies only the kernels a model uses).
 * The requantization itself lives in exactly one place: quant/mt_requantize.c.
 */
#ifndef MT_NN_H
#define MT_NN_H

#include <float.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mt_runtime.h"

/* Cores with the DSP extension (Cortex-M4/M7/M33...: arm-none-eabi-gcc -mcpu=cortex-m7 defines
 * both macros) run the int8 dot products below two MACs per SMLAD and the saturating adds as
 * QADD; every other build (the host) runs the portable C, which gives the same integers.
 * MT_NN_DSP is 0 or 1 so the tests can report which path was built. */
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && !defined(MT_NN_NO_DSP)
#include <arm_acle.h>
#define MT_NN_DSP 1
#else
#define MT_NN_DSP 0
#endif

/* Cores with Helium (MVE integer: the Cortex-M55) run those dot products 16 multiply-adds per
 * instruction (mt_nn_mve.h), the same integers again. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1) && !defined(MT_NN_NO_MVE)
#include "mt_nn_mve.h"
#define MT_NN_MVE 1
#else
#define MT_NN_MVE 0
#endif

/* x86-64 hosts built for AVX2 (the host target passes -march=x86-64-v3 where the CPU has it,
 * targets/host.py) run the int8 1x1 and depthwise kernels in 256-bit vectors (mt_nn_vec.h,
 * mt_nn_pw_vec.h, mt_nn_dw_vec.h), the same integers again; -DMT_NN_NO_VEC builds the portable C. */
#if defined(__x86_64__) && defined(__AVX2__) && !defined(MT_NN_NO_VEC)
#define MT_NN_VEC 1
#else
#define MT_NN_VEC 0
#endif

/* Helpers with a stack buffer are kept out of line, so that the buffers of helpers called one
 * after the other never add up in one inlined frame (the stack high-water counts in SRAM). */
#if defined(__GNUC__)
#define MT_NN_NOINLINE __attribute__((noinline, unused))
#else
#define MT_NN_NOINLINE
#endif

/* The float kernels document their exact float32 expressions (and the simulator reproduces
 * them): that needs float arithmetic evaluated in float32, without excess precision (and
 * without FMA contraction, which the build disables with -ffp-contract=off). */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#error "the microtrain runtime needs FLT_EVAL_METHOD == 0 (float arithmetic evaluated in float32)"
#endif

/* Largest number of int8*int8 products an int32 accumulator may sum: |x - z_x| <= 255 and
 * |w| <= 128, so each product is at most 32640 in magnitude and 65536 * 32640 =
 * 2139095040 <= INT32_MAX = 2147483647. */
#define MT_NN_MAX_DOT_LENGTH 65536

/* The int8 dot products of the forward kernels: sum over i < n of (x[i] - zero_point) * w[i],
 * x and w int8, zero_point in [-128, 127], n <= MT_NN_MAX_DOT_LENGTH (checked by the callers),
 * so every partial sum, in any order, fits int32 and both paths give the same (exact) sum.
 *
 * DSP path, per 4 elements: one 32-bit load of x and of w (memcpy: unaligned loads are allowed
 * on Cortex-M7 and the compiler emits a plain LDR; the C stays defined); SXTAB16 sign-extends
 * bytes 0 and 2 (and, rotated by 8, bytes 1 and 3) into two int16 lanes while adding the
 * offset -zero_point to each lane (|x - zero_point| <= 255 fits int16); SXTB16 does the same
 * for w without offset; SMLAD adds both lane products to the accumulator. x and w go through
 * the same byte permutation, so pairs match whatever the byte order. The tail (n % 4) and the
 * host run the portable loop. */
#if MT_NN_DSP
static inline uint32_t mt_nn_load4(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* SXTB16 / SXTAB16 of bytes 1 and 3 (the operand rotated right by 8). GCC 12's ACLE has no
 * __ror and does not fold a separate rotate into the instruction's ROR #8 operand, so these
 * two are written as one instruction each. */
static inline int32_t mt_nn_sxtb16_ror8(uint32_t v)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

static inline int32_t mt_nn_sxtab16_ror8(int32_t a, uint32_t v)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(v));
    return r;
}

/* -zero_point in both int16 lanes (conversions to unsigned types are modular: defined). */
static inline int32_t mt_nn_lane_offset(int32_t zero_point)
{
    return (int32_t)((uint32_t)(uint16_t)(-zero_point) * 0x00010001u);
}
#endif

static inline int32_t mt_nn_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t zero_point)
{
    int32_t acc = 0;
    int32_t i = 0;
#if MT_NN_MVE
    return mt_nn_mve_dot_s8(x, w, n, zero_point);
#elif MT_NN_DSP
    const int32_t offset = mt_nn_lane_offset(zero_point);
    for (; i + 4 <= n; i += 4) {
        const uint32_t xv = mt_nn_load4(x + i);
        const uint32_t wv = mt_nn_load4(w + i);
        acc = __smlad(__sxtab16(offset, (int32_t)xv), __sxtb16((int32_t)wv), acc);
        acc = __smlad(mt_nn_sxtab16_ror8(offset, xv), mt_nn_sxtb16_ror8(wv), acc);
    }
#endif
    for (; i < n; ++i) {
        acc += ((int32_t)x[i] - zero_point) * (int32_t)w[i];
    }
    return acc;
}

/* Two dot products sharing x (two output channels of a 1x1 conv): each x word loaded and
 * offset once feeds both accumulators; acc[k] += dot(x, w_k). Two, not four: with four
 * weight rows the loop needs more registers than Thumb-2 has and gcc spills in the loop. */
static inline void mt_nn_dot2_s8(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n, int32_t zero_point,
                                 int32_t acc[2])
{
    int32_t a0 = acc[0], a1 = acc[1];
    int32_t i = 0;
#if MT_NN_MVE
    mt_nn_mve_dot2_s8(x, w0, w1, n, zero_point, acc);
    return;
#elif MT_NN_DSP
    const int32_t offset = mt_nn_lane_offset(zero_point);
    for (; i + 4 <= n; i += 4) {
        const uint32_t xv = mt_nn_load4(x + i);
        const int32_t x02 = __sxtab16(offset, (int32_t)xv);
        const int32_t x13 = mt_nn_sxtab16_ror8(offset, xv);
        uint32_t wv = mt_nn_load4(w0 + i);
        a0 = __smlad(x02, __sxtb16((int32_t)wv), a0);
        a0 = __smlad(x13, mt_nn_sxtb16_ror8(wv), a0);
        wv = mt_nn_load4(w1 + i);
        a1 = __smlad(x02, __sxtb16((int32_t)wv), a1);
        a1 = __smlad(x13, mt_nn_sxtb16_ror8(wv), a1);
    }
#endif
    for (; i < n; ++i) {
        const int32_t xi = (int32_t)x[i] - zero_point;
        a0 += xi * (int32_t)w0[i];
        a1 += xi * (int32_t)w1[i];
    }
    acc[0] = a0;
    acc[1] = a1;
}

/* One row of a depthwise window: sum over k < n of (x[k * stride] - zero_point) * w[k] (x steps
 * over the NHWC channels, w is contiguous). The common widths 3, 5 and 7 are written out, which
 * saves the loop's per-tap compare, branch and pointer bump; the sum is the same. */
static inline int32_t mt_nn_dw_row_s8(const int8_t *x, int32_t stride, const int8_t *w, int32_t n,
                                      int32_t zero_point)
{
    int32_t acc = 0;
    int32_t k;
    if (n == 3) {
        return ((int32_t)x[0] - zero_point) * (int32_t)w[0] + ((int32_t)x[stride] - zero_point) * (int32_t)w[1] +
               ((int32_t)x[2 * stride] - zero_point) * (int32_t)w[2];
    }
    if (n == 5) {
        return ((int32_t)x[0] - zero_point) * (int32_t)w[0] + ((int32_t)x[stride] - zero_point) * (int32_t)w[1] +
               ((int32_t)x[2 * stride] - zero_point) * (int32_t)w[2] +
               ((int32_t)x[3 * stride] - zero_point) * (int32_t)w[3] +
               ((int32_t)x[4 * stride] - zero_point) * (int32_t)w[4];
    }
    if (n == 7) {
        return ((int32_t)x[0] - zero_point) * (int32_t)w[0] + ((int32_t)x[stride] - zero_point) * (int32_t)w[1] +
               ((int32_t)x[2 * stride] - zero_point) * (int32_t)w[2] +
               ((int32_t)x[3 * stride] - zero_point) * (int32_t)w[3] +
               ((int32_t)x[4 * stride] - zero_point) * (int32_t)w[4] +
               ((int32_t)x[5 * stride] - zero_point) * (int32_t)w[5] +
               ((int32_t)x[6 * stride] - zero_point) * (int32_t)w[6];
    }
    for (k = 0; k < n; ++k) {
        acc += ((int32_t)x[k * stride] - zero_point) * (int32_t)w[k];
    }
    return acc;
}

/* Largest receptive field (kernel_h * kernel_w * in_c bytes) gathered into a patch on the
 * stack by mt_nn_patch_s8 (a 3x3 RGB first conv needs 27). */
#define MT_NN_PATCH_MAX 64

/* The receptive field of one conv output pixel as one contiguous [kernel_h][kernel_w][in_c]
 * patch, so that its dot product with a weight row is a single run: row[ky] is the start of
 * input row y0 + ky for ky in [ky_begin, ky_end) and x0 the window's first column; taps in
 * the padding get the input zero point, so they add (z - z) * w = 0 as in the reference. */
static inline void mt_nn_patch_s8(int8_t *patch, const int8_t *const *row, int32_t ky_begin, int32_t ky_end,
                                  int32_t kx_begin, int32_t kx_end, int32_t x0, const mt_conv_params *p)
{
    const int32_t tap_row = p->kernel_w * p->in_c;
    int32_t ky;
    memset(patch, (int)(int8_t)p->input_zero_point, (size_t)(p->kernel_h * tap_row));
    for (ky = ky_begin; ky < ky_end; ++ky) {
        memcpy(patch + ky * tap_row + kx_begin * p->in_c, row[ky] + (x0 + kx_begin) * p->in_c,
               (size_t)((kx_end - kx_begin) * p->in_c));
    }
}

/* acc + bias, saturated to int32. Saturating here equals the reference (int64 sum, then
 * requantize saturates acc * 2^left): if the int64 sum leaves the int32 range, so does its
 * left shift, with the same sign, and both saturate to the same bound. The comparisons
 * are arranged so that nothing overflows (32-bit arithmetic only). */
static inline int32_t mt_nn_sat_add_s32(int32_t a, int32_t b)
{
#if MT_NN_DSP
    return __qadd(a, b); /* QADD: the same saturating add in one instruction */
#else
    if (b > 0 && a > INT32_MAX - b) {
        return INT32_MAX;
    }
    if (b < 0 && a < INT32_MIN - b) {
        return INT32_MIN;
    }
    return a + b;
#endif
}

/* The last steps of every int8 kernel: add the output zero point, clamp, store as int8.
 * The requantized value may be anywhere in the int32 range, so it is compared with the
 * clamp bounds moved by the zero point (small numbers) before the addition, which then
 * cannot overflow: clamp(r + z, lo, hi) == clamp(r, lo - z, hi - z) + z. */
static inline int8_t mt_nn_offset_clamp(int32_t requantized, int32_t zero_point, int32_t act_min, int32_t act_max)
{
#if MT_NN_DSP
    /* QADD saturates r + z to the int32 range, which keeps every value that leaves it on the
     * same side of the int8 clamp bounds: clamp(sat(r + z), lo, hi) == clamp(r, lo - z, hi - z) + z. */
    const int32_t v = __qadd(requantized, zero_point);
    return (int8_t)(v < act_min ? act_min : v > act_max ? act_max : v);
#else
    if (requantized < act_min - zero_point) {
        return (int8_t)act_min;
    }
    if (requantized > act_max - zero_point) {
        return (int8_t)act_max;
    }
    return (int8_t)(requantized + zero_point);
#endif
}

static inline int mt_nn_is_int8(int32_t v)
{
    return v >= -128 && v <= 127;
}

static inline mt_status mt_nn_check_act(int32_t zero_point_in, int32_t zero_point_out, int32_t act_min,
                                        int32_t act_max)
{
    if (!mt_nn_is_int8(zero_point_in) || !mt_nn_is_int8(zero_point_out) || !mt_nn_is_int8(act_min) ||
        !mt_nn_is_int8(act_max) || act_min > act_max) {
        return MT_ERR_PARAM;
    }
    return MT_OK;
}

/* Shape consistency of a conv (forward and backward): the IR's conv_output_hw formula. */
static inline mt_status mt_nn_check_conv_shape(const mt_conv_params *p)
{
    if (p->in_h < 1 || p->in_w < 1 || p->in_c < 1 || p->out_h < 1 || p->out_w < 1 || p->out_c < 1 ||
        p->kernel_h < 1 || p->kernel_w < 1 || p->stride_h < 1 || p->stride_w < 1 || p->groups < 1 ||
        p->pad_top < 0 || p->pad_left < 0 || p->pad_bottom < 0 || p->pad_right < 0) {
        return MT_ERR_SHAPE;
    }
    if (p->in_c % p->groups != 0 || p->out_c % p->groups != 0) {
        return MT_ERR_SHAPE;
    }
    if (p->in_h + p->pad_top + p->pad_bottom < p->kernel_h || p->in_w + p->pad_left + p->pad_right < p->kernel_w) {
        return MT_ERR_SHAPE;
    }
    if (p->out_h != (p->in_h + p->pad_top + p->pad_bottom - p->kernel_h) / p->stride_h + 1 ||
        p->out_w != (p->in_w + p->pad_left + p->pad_right - p->kernel_w) / p->stride_w + 1) {
        return MT_ERR_SHAPE;
    }
    return MT_OK;
}

/* Requantization constants of n channels: multiplier >= 0, shift in [-31, 30]. */
static inline mt_status mt_nn_check_quant(const int32_t *multiplier, const int32_t *shift, int32_t n)
{
    int32_t c;
    for (c = 0; c < n; ++c) {
        if (multiplier[c] < 0 || shift[c] < -31 || shift[c] > 30) {
            return MT_ERR_PARAM;
        }
    }
    return MT_OK;
}

/* The checks of one int8 conv stage inside a fused kernel: per-channel constants present,
 * shape, activation range, requantization constants, and the accumulator bound (dot_length
 * products of magnitude <= 255*128, at most MT_NN_MAX_DOT_LENGTH of them). */
static inline mt_status mt_nn_check_conv_stage(const mt_conv_params *p, const mt_per_channel_quant *q,
                                               int64_t dot_length)
{
    mt_status st;
    if (q->multiplier == NULL || q->shift == NULL) {
        return MT_ERR_NULL;
    }
    if ((st = mt_nn_check_conv_shape(p)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_act(p->input_zero_point, p->output_zero_point, p->act_min, p->act_max)) != MT_OK) {
        return st;
    }
    if ((st = mt_nn_check_quant(q->multiplier, q->shift, p->out_c)) != MT_OK) {
        return st;
    }
    return dot_length > MT_NN_MAX_DOT_LENGTH ? MT_ERR_OVERFLOW : MT_OK;
}

/* The output store of a conv stage, written once: bias (saturating), one mt_requantize call,
 * offset, clamp. A kernel takes the stage's constants into an mt_nn_store (a local) once per
 * loop, so its hot loop does not reload them from the param structs after every
 * mt_requantize call (it must for struct fields: the call could have changed them). */
typedef struct {
    const int32_t *bias, *multiplier, *shift;
    int32_t zero_point, act_min, act_max;
    const int32_t *pack; /* q->pack: the conv's compile-time set-up, or NULL */
} mt_nn_store;

static inline mt_nn_store mt_nn_store_of(const int32_t *bias, const mt_per_channel_quant *q, const mt_conv_params *p)
{
    mt_nn_store s;
    s.bias = bias;
    s.multiplier = q->multiplier;
    s.shift = q->shift;
    s.zero_point = p->output_zero_point;
    s.act_min = p->act_min;
    s.act_max = p->act_max;
    s.pack = q->pack;
    return s;
}

static inline int8_t mt_nn_store_s8(int32_t acc, const mt_nn_store *s, int32_t c)
{
    if (s->bias != NULL) {
        acc = mt_nn_sat_add_s32(acc, s->bias[c]);
    }
    return mt_nn_offset_clamp(mt_requantize(acc, s->multiplier[c], s->shift[c]), s->zero_point, s->act_min,
                              s->act_max);
}

/* Largest kernel height of the fused inverted-bottleneck kernels' row stages (their per-row
 * offsets and row pointers live in small local arrays). */
#define MT_NN_IB_MAX_KERNEL 16

/* A channel selection over out_c output channels. */
static inline mt_status mt_nn_check_channels(const mt_channels *ch, int32_t out_c)
{
    int32_t j;
    if (ch->begin < 0 || ch->begin > ch->end || ch->end > ch->count || ch->count > out_c) {
        return MT_ERR_PARAM;
    }
    if (ch->index != NULL) {
        for (j = ch->begin; j < ch->end; ++j) {
            if (ch->index[j] < 0 || ch->index[j] >= out_c) {
                return MT_ERR_PARAM;
            }
        }
    }
    return MT_OK;
}

/* Output channel of list entry j. */
static inline int32_t mt_nn_channel(const mt_channels *ch, int32_t j)
{
    return ch->index != NULL ? ch->index[j] : j;
}

/* murmur3 32-bit finalizer (all arithmetic mod 2^32). */
static inline uint32_t mt_nn_fmix32(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

/* The update rule's noise, split so that a kernel updating many elements of one tensor in
 * one step hashes (seed, step, tensor_id) once: noise(index) = mt_nn_noise_at(base, index)
 * with base = mt_nn_noise_base(seed, step, tensor_id). mt_update_noise is exactly this. */
static inline uint32_t mt_nn_noise_base(uint32_t seed, uint32_t step, uint32_t tensor_id)
{
    return mt_nn_fmix32(mt_nn_fmix32(seed ^ (uint32_t)(tensor_id * 0x9E3779B9u)) ^ step);
}

static inline uint32_t mt_nn_noise_at(uint32_t base, uint32_t index)
{
    return mt_nn_fmix32(base ^ index) >> 8; /* 24 bits: exactly representable in a float32 */
}

/* The update rounding, written once (mt_round_update and the update kernels use it):
 * nearest floor(v + 0.5f); stochastic floor(v + u), u = noise * 2^-24 (exact). The float
 * additions are float32 operations (FLT_EVAL_METHOD 0, checked above). */
/* The optimizer state step of one element (mt_update_params): turns the sample's gradient *g of
 * buffer element `at` into the update direction. Returns 0 when this call only accumulates. */
static inline int mt_nn_direction(const mt_update_params *u, uint32_t at, float *g)
{
    if (u->accum != NULL) {
        const float a = u->accum[at] + *g;
        if (!u->apply) {
            u->accum[at] = a;
            return 0;
        }
        u->accum[at] = 0.0f;
        *g = a * u->accum_scale;
    }
    if (u->momentum != NULL) {
        const float m = u->momentum_coef * u->momentum[at] + *g;
        u->momentum[at] = m;
        *g = m;
    }
    return 1;
}

/* mt_floorf inlined where it is one instruction (FPv5 and Armv8-M FPUs: VRINTM, the condition
 * and the builtin of math/mt_floorf.c), else the call. */
static inline float mt_nn_floorf(float v)
{
#if defined(__ARM_FP) && (__ARM_FP & 4) && ((__ARM_FP & 8) || __ARM_ARCH >= 8)
    return __builtin_floorf(v);
#else
    return mt_floorf(v);
#endif
}

static inline float mt_nn_round(float v, int32_t rounding, uint32_t noise_base, uint32_t index)
{
    if (rounding == MT_ROUND_NEAREST) {
        return mt_nn_floorf(v + 0.5f);
    }
    if (rounding == MT_ROUND_STOCHASTIC) {
        return mt_nn_floorf(v + (float)mt_nn_noise_at(noise_base, index) * (1.0f / 16777216.0f));
    }
    return v;
}

/* The shape fields of a pooling window are usable: sizes and strides >= 1, padding >= 0. */
static inline int mt_nn_pool_shape_ok(const mt_pool_params *p)
{
    return p->in_h >= 1 && p->in_w >= 1 && p->c >= 1 && p->out_h >= 1 && p->out_w >= 1 && p->filter_h >= 1 &&
           p->filter_w >= 1 && p->stride_h >= 1 && p->stride_w >= 1 && p->pad_top >= 0 && p->pad_left >= 0;
}

/* The window of output position o along one axis, clipped to the input: [*begin, *end)
 * (empty when *begin >= *end). The window starts at o * stride - pad and is filter long. */
static inline void mt_nn_window_1d(int32_t o, int32_t stride, int32_t pad, int32_t filter, int32_t in,
                                   int32_t *begin, int32_t *end)
{
    const int32_t start = o * stride - pad;
    *begin = start < 0 ? 0 : start;
    *end = start + filter < in ? start + filter : in;
}

#endif /* MT_NN_H */
