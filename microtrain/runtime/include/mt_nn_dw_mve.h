/*
 * mt_nn_dw_mve.h: the depthwise plane-row path (mt_nn_dw.h) with Helium (Armv8.1-M MVE, the
 * Cortex-M55); internal, static inline, included by mt_nn_dw.h on MVE builds.
 *
 * Output rows of one channel, four outputs per step in the four int32 lanes: per tap one
 * widening load of the four input bytes the outputs read (VLDRB.S32; a gather with offsets
 * k * stride for strides above 1) and one VMLA by the tap's weight, so the lanes hold the raw
 * sums sum x * w; the input zero point is folded out, as in the 1x1 path of mt_nn_fast.h:
 * sum (x - z) w = sum x w - z * sum w over the window's taps inside the input rows (padded
 * columns hold z on both sides, so they cancel). Then the fast store of mt_nn_fast.h on four
 * lanes: VRMULH is SMMULR ((a b + 2^31) >> 32), VSHL by -right the arithmetic shift, VMAX/VMIN
 * the clamp, and a narrowing (scatter) store of the bytes. Only channels whose fast-store
 * constants qualify (mt_nn_fast_store_of with the folded sum, the same bounds) take it, so every
 * output is the reference's integer; the others return 0 and take the DSP / reference path.
 */
#ifndef MT_NN_DW_MVE_H
#define MT_NN_DW_MVE_H

#include <arm_mve.h>

#include "mt_nn_fast.h"

/* mt_nn_dw_plane_rows_s8 (mt_nn_dw.h) for a channel whose constants qualify: returns 1 when done,
 * 0 (nothing written) otherwise. */
static inline int mt_nn_mve_dw_plane_rows_s8(const mt_conv_params *d, const mt_nn_store *s, int32_t c,
                                             const int8_t *const *prow, int32_t ky_begin, int32_t ky_end,
                                             int32_t rows, int32_t row_step, const int8_t *w, int8_t *y,
                                             int32_t y_stride, int32_t y_row_stride)
{
    const int32_t kw = d->kernel_w, out_w = d->out_w, sw = d->stride_w;
    const int64_t window = (int64_t)d->kernel_h * kw;
    const uint32x4_t in_off = vmulq_n_u32(vidupq_n_u32(0u, 1), (uint32_t)sw);
    const uint32x4_t out_off = vmulq_n_u32(vidupq_n_u32(0u, 1), (uint32_t)y_stride);
    int32_t wsum = 0, ky, kx, ox, row;
    mt_nn_fast_store f;
    for (ky = ky_begin; ky < ky_end; ++ky) {
        for (kx = 0; kx < kw; ++kx) {
            wsum += w[ky * kw + kx];
        }
    }
    if (!mt_nn_fast_store_of(s->bias != NULL ? s->bias[c] : 0, (int64_t)d->input_zero_point * wsum, s->multiplier[c],
                             s->shift[c], window * 16384, window * 32640, &f)) {
        return 0;
    }
    {
        const int32x4_t bias2 = vdupq_n_s32(f.bias2), mult = vdupq_n_s32(f.multiplier);
        const int32x4_t right = vdupq_n_s32(-f.right);
        const int32x4_t lo = vdupq_n_s32(d->act_min), hi = vdupq_n_s32(d->act_max);
        for (row = 0; row < rows; ++row) {
            int8_t *yr = y + row * y_row_stride;
            for (ox = 0; ox < out_w; ox += 4) {
                const mve_pred16_t p = vctp32q((uint32_t)(out_w - ox));
                int32x4_t acc = vdupq_n_s32(0), h;
                for (ky = ky_begin; ky < ky_end; ++ky) {
                    const int8_t *r = prow[ky] + row * row_step + ox * sw;
                    const int8_t *wk = w + ky * kw;
                    for (kx = 0; kx < kw; ++kx) {
                        const int32x4_t x = sw == 1 ? vldrbq_z_s32(r + kx, p)
                                                    : vldrbq_gather_offset_z_s32(r + kx, in_off, p);
                        acc = vmlaq_n_s32(acc, x, (int32_t)wk[kx]);
                    }
                }
                h = vrmulhq_s32(vaddq_s32(bias2, vshlq_n_s32(acc, 1)), mult);
                h = vshlq_s32(vaddq_s32(vaddq_n_s32(h, f.round), vshrq_n_s32(h, 31)), right);
                h = vminq_s32(vmaxq_s32(vaddq_n_s32(h, d->output_zero_point), lo), hi);
                vstrbq_scatter_offset_p_s32(yr + ox * y_stride, out_off, h, p);
            }
        }
    }
    return 1;
}

#endif /* MT_NN_DW_MVE_H */
