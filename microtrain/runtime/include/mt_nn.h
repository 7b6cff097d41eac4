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
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "mt_runtime.h"

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

/* acc + bias, saturated to int32. Saturating here equals the reference (int64 sum, then
 * requantize saturates acc * 2^left): if the int64 sum leaves the int32 range, so does its
 * left shift, with the same sign, and both saturate to the same bound. The comparisons
 * are arranged so that nothing overflows (32-bit arithmetic only). */
static inline int32_t mt_nn_sat_add_s32(int32_t a, int32_t b)
{
    if (b > 0 && a > INT32_MAX - b) {
        return INT32_MAX;
    }
    if (b < 0 && a < INT32_MIN - b) {
        return INT32_MIN;
    }
    return a + b;
}

/* The last steps of every int8 kernel: add the output zero point, clamp, store as int8.
 * The requantized value may be anywhere in the int32 range, so it is compared with the
 * clamp bounds moved by the zero point (small numbers) before the addition, which then
 * cannot overflow: clamp(r + z, lo, hi) == clamp(r, lo - z, hi - z) + z. */
static inline int8_t mt_nn_offset_clamp(int32_t requantized, int32_t zero_point, int32_t act_min, int32_t act_max)
{
    if (requantized < act_min - zero_point) {
        return (int8_t)act_min;
    }
    if (requantized > act_max - zero_point) {
        return (int8_t)act_max;
    }
    return (int8_t)(requantized + zero_point);
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

/* One output element of a conv stage: bias (saturating), one requantize call, offset, clamp. */
static inline int8_t mt_nn_conv_store_s8(int32_t acc, const int32_t *bias, const mt_per_channel_quant *q, int32_t c,
                                         const mt_conv_params *p)
{
    if (bias != NULL) {
        acc = mt_nn_sat_add_s32(acc, bias[c]);
    }
    return mt_nn_offset_clamp(mt_requantize(acc, q->multiplier[c], q->shift[c]), p->output_zero_point,
                              p->act_min, p->act_max);
}

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
 * nearest floorf(v + 0.5f); stochastic floorf(v + u), u = noise * 2^-24 (exact). The float
 * additions are float32 operations (FLT_EVAL_METHOD 0, checked above). */
static inline float mt_nn_round(float v, int32_t rounding, uint32_t noise_base, uint32_t index)
{
    if (rounding == MT_ROUND_NEAREST) {
        return floorf(v + 0.5f);
    }
    if (rounding == MT_ROUND_STOCHASTIC) {
        return floorf(v + (float)mt_nn_noise_at(noise_base, index) * (1.0f / 16777216.0f));
    }
    return v;
}

#endif /* MT_NN_H */
