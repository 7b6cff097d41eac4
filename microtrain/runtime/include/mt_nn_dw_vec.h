/*
 * mt_nn_dw_vec.h: the depthwise paths of mt_nn_dw.h with AVX2, for x86-64 hosts (MT_NN_VEC;
 * internal, static inline, included by mt_nn_dw.h).
 *
 * Plane rows (one channel, padded, contiguous; mt_nn_vec_dw_plane_rows_s8): 16 outputs of a
 * row at a time in int32 lanes. Taps go in pairs (kx, kx + 1) with the pair's weights in both
 * int16 halves of every lane, one VPMADDWD per pair and 8 outputs: with stride 2 the two taps
 * of output o are the adjacent bytes 2o + kx, 2o + kx + 1, so one sign-extended load is the
 * pairs of 8 outputs; with stride 1 the loads at kx and kx + 1 are interleaved (VPUNPCK*WD, in
 * 128-bit lanes: outputs 0-3, 8-11 and 4-7, 12-15, put back in order at the end). An odd last
 * tap pairs with weight 0 (stride 2 then reads one byte past the window, inside the plane row's
 * readable slack of mt_nn_dw.h). The zero point is folded out as in mt_nn_dw_mve.h: sum (x - z) w
 * = sum x w - z * sum w over the window rows inside the input (padded columns hold z), then the
 * fast store (mt_nn_vec_fast_out). The last, partial group of 16 outputs reads copies of its
 * input bytes (zeros after them) so that no load passes the plane row. Channels whose
 * constants do not qualify, strides above 2 and kernels wider than 16 take the portable path.
 *
 * NHWC rows (mt_nn_vec_dw_row_s8): eight channels at a time, (x - z) * w of every tap inside
 * the input as int16 (|x - z| <= 255, |w| <= 128: |product| <= 32640 fits) widened into int32
 * lanes, the weights of the eight channels transposed to one int16 vector per tap once per
 * group; the reference sum of every channel, then the fast store, or the reference store for
 * a lane whose constants do not qualify. The last in_c % 8 channels take the portable loop.
 */
#ifndef MT_NN_DW_VEC_H
#define MT_NN_DW_VEC_H

#include "mt_nn_vec.h"

/* Widest kernel row of the vector plane path (pairs of taps per window row: 8). */
#define MT_NN_VEC_DW_KW_MAX 16
/* Bytes of one window row of a partial group: 15 * 2 + 16 + 1 read, rounded up. */
#define MT_NN_VEC_DW_TAIL_BYTES 64

/* 16 outputs of one plane row group: src[ky] at the group's first window column. */
static inline void mt_nn_vec_dw_plane16(const int8_t *const *src, int32_t ky_begin, int32_t ky_end, int32_t kw,
                                        int32_t sw, const __m256i (*wp)[MT_NN_VEC_DW_KW_MAX / 2], __m256i *out0,
                                        __m256i *out1)
{
    const int32_t pairs = (kw + 1) >> 1;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0;
    int32_t ky, j;
    if (sw == 2) {
        for (ky = ky_begin; ky < ky_end; ++ky) {
            const int8_t *r = src[ky];
            for (j = 0; j < pairs; ++j) {
                a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(mt_nn_vec_load16_s8(r + 2 * j), wp[ky][j]));
                a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(mt_nn_vec_load16_s8(r + 2 * j + 16), wp[ky][j]));
            }
        }
        *out0 = a0;
        *out1 = a1;
        return;
    }
    for (ky = ky_begin; ky < ky_end; ++ky) {
        const int8_t *r = src[ky];
        for (j = 0; j < pairs; ++j) {
            const __m256i a = mt_nn_vec_load16_s8(r + 2 * j);
            const __m256i b = 2 * j + 1 < kw ? mt_nn_vec_load16_s8(r + 2 * j + 1) : _mm256_setzero_si256();
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wp[ky][j]));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wp[ky][j]));
        }
    }
    /* a0: outputs 0-3 | 8-11, a1: 4-7 | 12-15 */
    *out0 = _mm256_permute2x128_si256(a0, a1, 0x20);
    *out1 = _mm256_permute2x128_si256(a0, a1, 0x31);
}

/* mt_nn_dw_plane_rows_s8 (mt_nn_dw.h) for a channel this path takes: returns 1 when done, 0
 * (nothing written) otherwise. */
static inline int mt_nn_vec_dw_plane_rows_s8(const mt_conv_params *d, const mt_nn_store *s, int32_t c,
                                             const int8_t *const *prow, int32_t ky_begin, int32_t ky_end,
                                             int32_t rows, int32_t row_step, const int8_t *w, int8_t *y,
                                             int32_t y_stride, int32_t y_row_stride)
{
    const int32_t kw = d->kernel_w, sw = d->stride_w, out_w = d->out_w;
    const int64_t window = (int64_t)d->kernel_h * kw;
    __m256i wp[MT_NN_IB_MAX_KERNEL][MT_NN_VEC_DW_KW_MAX / 2];
    int8_t tail[MT_NN_IB_MAX_KERNEL][MT_NN_VEC_DW_TAIL_BYTES];
    const int8_t *src[MT_NN_IB_MAX_KERNEL];
    int32_t wsum = 0, ky, kx, ox, r, k;
    mt_nn_fast_store f;
    mt_nn_vec_store v;
    __m256i zo, lo, hi;
    if (sw < 1 || sw > 2 || kw > MT_NN_VEC_DW_KW_MAX || d->kernel_h > MT_NN_IB_MAX_KERNEL) {
        return 0;
    }
    for (ky = ky_begin; ky < ky_end; ++ky) {
        for (kx = 0; kx < kw; ++kx) {
            wsum += w[ky * kw + kx];
        }
        for (kx = 0; kx < kw; kx += 2) {
            wp[ky][kx >> 1] = _mm256_set1_epi32(
                (int32_t)((uint32_t)(uint16_t)(int16_t)w[ky * kw + kx] |
                          ((uint32_t)(uint16_t)(int16_t)(kx + 1 < kw ? w[ky * kw + kx + 1] : 0) << 16)));
        }
    }
    if (!mt_nn_fast_store_of(s->bias != NULL ? s->bias[c] : 0, (int64_t)d->input_zero_point * wsum, s->multiplier[c],
                             s->shift[c], window * 16384, window * 32640, &f)) {
        return 0;
    }
    v = mt_nn_vec_store_dup(&f);
    zo = _mm256_set1_epi32(d->output_zero_point);
    lo = _mm256_set1_epi32(d->act_min);
    hi = _mm256_set1_epi32(d->act_max);
    for (r = 0; r < rows; ++r) {
        int8_t *yr = y + r * y_row_stride;
        for (ox = 0; ox < out_w; ox += 16) {
            const int32_t nout = out_w - ox < 16 ? out_w - ox : 16;
            __m256i a0, a1;
            int32_t o[16];
            for (ky = ky_begin; ky < ky_end; ++ky) {
                src[ky] = prow[ky] + r * row_step + ox * sw;
                if (nout < 16) { /* the input bytes the partial group's windows read, zeros after them */
                    memset(tail[ky], 0, sizeof tail[ky]);
                    memcpy(tail[ky], src[ky], (size_t)((nout - 1) * sw + kw));
                    src[ky] = tail[ky];
                }
            }
            mt_nn_vec_dw_plane16(src, ky_begin, ky_end, kw, sw, (const __m256i(*)[MT_NN_VEC_DW_KW_MAX / 2])wp, &a0, &a1);
            _mm256_storeu_si256((__m256i *)(void *)o, mt_nn_vec_fast_out(a0, &v, zo, lo, hi));
            _mm256_storeu_si256((__m256i *)(void *)(o + 8), mt_nn_vec_fast_out(a1, &v, zo, lo, hi));
            for (k = 0; k < nout; ++k) {
                yr[(ox + k) * y_stride] = (int8_t)o[k];
            }
        }
    }
    return 1;
}

/* The channels [0, returned) of mt_nn_dw_row_fast_s8 (mt_nn_dw.h), eight at a time; the caller
 * runs the reference loop over the rest. */
static inline int32_t mt_nn_vec_dw_row_s8(const mt_conv_params *d, const mt_nn_store *s,
                                          const int8_t *const *src_row, int32_t ky_begin, int32_t ky_end,
                                          const int8_t *weights, int8_t *y)
{
    const int32_t C = d->in_c, K = d->kernel_h * d->kernel_w, kw = d->kernel_w;
    const int64_t bound = (int64_t)K * 32640;
    const __m128i zv = _mm_set1_epi16((int16_t)d->input_zero_point);
    const __m256i zo = _mm256_set1_epi32(d->output_zero_point);
    const __m256i lo = _mm256_set1_epi32(d->act_min), hi = _mm256_set1_epi32(d->act_max);
    int16_t wt[MT_NN_DW_TAPS_MAX][8];
    int32_t c0, t, k, ox, ky, kx;
    if (K > MT_NN_DW_TAPS_MAX) {
        return 0;
    }
    for (c0 = 0; c0 + 8 <= C; c0 += 8) {
        int32_t b2[8], m[8], rd[8], rt[8], ok[8], all = 1;
        mt_nn_vec_store f;
        for (k = 0; k < 8; ++k) {
            mt_nn_fast_store fk;
            for (t = 0; t < K; ++t) {
                wt[t][k] = weights[(c0 + k) * K + t];
            }
            ok[k] = mt_nn_fast_store_of(s->bias != NULL ? s->bias[c0 + k] : 0, 0, s->multiplier[c0 + k],
                                        s->shift[c0 + k], bound, bound, &fk);
            b2[k] = ok[k] ? fk.bias2 : 0;
            m[k] = ok[k] ? fk.multiplier : 0;
            rd[k] = ok[k] ? fk.round : 0;
            rt[k] = ok[k] ? fk.right : 1;
            all &= ok[k];
        }
        f = mt_nn_vec_store_load(b2, m, rd, rt);
        for (ox = 0; ox < d->out_w; ++ox) {
            const int32_t x0 = ox * d->stride_w - d->pad_left;
            const int32_t kx_begin = x0 < 0 ? -x0 : 0;
            const int32_t kx_end = d->in_w - x0 < kw ? d->in_w - x0 : kw;
            __m256i acc = _mm256_setzero_si256();
            int8_t *yo = y + ox * C + c0;
            int32_t o[8], a[8];
            for (ky = ky_begin; ky < ky_end; ++ky) {
                const int8_t *xr = src_row[ky] + (x0 + kx_begin) * C + c0;
                for (kx = kx_begin; kx < kx_end; ++kx, xr += C) {
                    const __m128i xv = _mm_sub_epi16(_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(const void *)xr)), zv);
                    const __m128i pr = _mm_mullo_epi16(xv, _mm_loadu_si128((const __m128i *)(const void *)wt[ky * kw + kx]));
                    acc = _mm256_add_epi32(acc, _mm256_cvtepi16_epi32(pr));
                }
            }
            _mm256_storeu_si256((__m256i *)(void *)o, mt_nn_vec_fast_out(acc, &f, zo, lo, hi));
            if (all) {
                for (k = 0; k < 8; ++k) {
                    yo[k] = (int8_t)o[k];
                }
            } else {
                _mm256_storeu_si256((__m256i *)(void *)a, acc);
                for (k = 0; k < 8; ++k) {
                    yo[k] = ok[k] ? (int8_t)o[k] : mt_nn_store_s8(a[k], s, c0 + k);
                }
            }
        }
    }
    return c0;
}

#endif /* MT_NN_DW_VEC_H */
