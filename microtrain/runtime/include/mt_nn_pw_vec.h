/*
 * mt_nn_pw_vec.h: the 1x1 convolution of mt_nn_pointwise_fast_s8 (mt_nn_fast.h) with AVX2, for
 * x86-64 hosts (MT_NN_VEC; internal, static inline, included by mt_nn_fast.h).
 *
 * Blocked over four output channels x two pixels: the four weight rows are sign-extended once
 * per block into int16 vectors of 16 inputs (zero past in_c); per 16 inputs, one load and
 * extension of each pixel's x and eight VPMADDWD (128 multiply-adds) into eight int32 vectors,
 * whose lanes are summed at the end (VPHADDD: exact integer sums). As in the portable path
 * the zero point is folded out (sum (x - z) w = sum x w - z * sum w, mt_nn_fast.h), so the
 * inner loop is a raw int8 dot product, and the eight outputs are requantized at once
 * (mt_nn_vec_fast_out) and, in a full block, stored as one word per pixel (NHWC) or two bytes per
 * channel (channel-planar rows). A channel whose constants do not qualify for the fast store gets the
 * reference store of its exact sum raw - z * sum w (computed modulo 2^32; it fits int32).
 *
 * The last 16-input group of a row is read with a masked load of whole words: in_c a
 * multiple of 4, or x rows padded to in_c rounded up to 4 (the bytes between are readable,
 * multiplied by zero weights). Other rows, and rows longer than the stack buffer, take the
 * portable path (the function returns 0).
 */
#ifndef MT_NN_PW_VEC_H
#define MT_NN_PW_VEC_H

#include "mt_nn_vec.h"

/* 16-input groups of the sign-extended weight rows on the stack: in_c <= 1024. */
#define MT_NN_VEC_PW_GROUPS 64

/* acc[p][c] += x_p . w_c over the 16-input groups: full groups, then the masked last one. */
#define MT_NN_VEC_PW_STEP(xa, xb, k)                                                                              \
    do {                                                                                                          \
        a00 = _mm256_add_epi32(a00, _mm256_madd_epi16(xa, wx[0][k]));                                             \
        a01 = _mm256_add_epi32(a01, _mm256_madd_epi16(xa, wx[1][k]));                                             \
        a02 = _mm256_add_epi32(a02, _mm256_madd_epi16(xa, wx[2][k]));                                             \
        a03 = _mm256_add_epi32(a03, _mm256_madd_epi16(xa, wx[3][k]));                                             \
        a10 = _mm256_add_epi32(a10, _mm256_madd_epi16(xb, wx[0][k]));                                             \
        a11 = _mm256_add_epi32(a11, _mm256_madd_epi16(xb, wx[1][k]));                                             \
        a12 = _mm256_add_epi32(a12, _mm256_madd_epi16(xb, wx[2][k]));                                             \
        a13 = _mm256_add_epi32(a13, _mm256_madd_epi16(xb, wx[3][k]));                                             \
    } while (0)

/* mt_nn_pointwise_fast_s8's contract (mt_nn_fast.h); returns 1 when done, 0 (nothing written)
 * when the shape is not one this path takes. */
static MT_NN_NOINLINE int mt_nn_vec_pointwise_s8(const mt_conv_params *p, const mt_per_channel_quant *q,
                                                 const int8_t *x, int32_t x_stride, int32_t pixels, const int8_t *w,
                                                 const int8_t *const *rows, const int32_t *bias, int8_t *y,
                                                 int32_t y_stride, int32_t y_cstride)
{
    const int32_t n = p->in_c, out_c = p->out_c, z = p->input_zero_point;
    const int32_t full_groups = n >> 4, tail = n & 15, words = (tail + 3) >> 2;
    const int64_t raw_bound = (int64_t)n * 16384, true_bound = (int64_t)n * 32640;
    const mt_nn_store s = mt_nn_store_of(bias, q, p);
    const __m256i zo = _mm256_set1_epi32(p->output_zero_point);
    const __m256i lo = _mm256_set1_epi32(p->act_min), hi = _mm256_set1_epi32(p->act_max);
    const __m128i tmask = _mm_cmpgt_epi32(_mm_set1_epi32(words), _mm_setr_epi32(0, 1, 2, 3));
    __m256i wx[4][MT_NN_VEC_PW_GROUPS];
    int32_t oc, px, k, g;
    if (full_groups + (tail != 0) > MT_NN_VEC_PW_GROUPS || ((n & 3) != 0 && x_stride < ((n + 3) & ~3))) {
        return 0;
    }
    for (oc = 0; oc < out_c; oc += 4) {
        const int32_t nc = out_c - oc < 4 ? out_c - oc : 4;
        int32_t b2[8], m[8], rd[8], rt[8], kz[4], ok[4], all = 1;
        mt_nn_vec_store f;
        for (k = 0; k < 4; ++k) {
            mt_nn_fast_store fk;
            ok[k] = 1;
            kz[k] = 0;
            b2[k] = m[k] = rd[k] = 0;
            rt[k] = 1;
            if (k < nc) {
                const int8_t *wr = rows != NULL ? rows[oc + k] : w + (oc + k) * n;
                const int32_t sum = mt_nn_row_sum_s8(wr, n);
                for (g = 0; g < full_groups; ++g) {
                    wx[k][g] = mt_nn_vec_load16_s8(wr + 16 * g);
                }
                if (tail != 0) {
                    int8_t last[16] = {0};
                    memcpy(last, wr + 16 * full_groups, (size_t)tail);
                    wx[k][full_groups] = mt_nn_vec_load16_s8(last);
                }
                kz[k] = z * sum; /* |z * sum| <= 128 * 128 * in_c <= 2^30 */
                ok[k] = mt_nn_fast_store_of(bias != NULL ? bias[oc + k] : 0, (int64_t)kz[k], q->multiplier[oc + k],
                                            q->shift[oc + k], raw_bound, true_bound, &fk);
                if (ok[k]) {
                    b2[k] = fk.bias2;
                    m[k] = fk.multiplier;
                    rd[k] = fk.round;
                    rt[k] = fk.right;
                }
            } else {
                for (g = 0; g < full_groups + (tail != 0); ++g) {
                    wx[k][g] = _mm256_setzero_si256();
                }
            }
            all &= ok[k];
            b2[k + 4] = b2[k];
            m[k + 4] = m[k];
            rd[k + 4] = rd[k];
            rt[k + 4] = rt[k];
        }
        f = mt_nn_vec_store_load(b2, m, rd, rt);
        for (px = 0; px < pixels; px += 2) {
            const int8_t *x0 = x + px * x_stride;
            const int8_t *x1 = px + 1 < pixels ? x0 + x_stride : x0; /* an odd last pixel: computed twice, stored once */
            const int32_t np = px + 1 < pixels ? 2 : 1;
            __m256i a00 = _mm256_setzero_si256(), a01 = a00, a02 = a00, a03 = a00;
            __m256i a10 = a00, a11 = a00, a12 = a00, a13 = a00, u0, u1, raw;
            int32_t o[8], r[8], pp;
            for (g = 0; g < full_groups; ++g) {
                const __m256i xa = mt_nn_vec_load16_s8(x0 + 16 * g), xb = mt_nn_vec_load16_s8(x1 + 16 * g);
                MT_NN_VEC_PW_STEP(xa, xb, g);
            }
            if (tail != 0) {
                const __m256i xa = _mm256_cvtepi8_epi16(_mm_maskload_epi32((const int *)(const void *)(x0 + 16 * g), tmask));
                const __m256i xb = _mm256_cvtepi8_epi16(_mm_maskload_epi32((const int *)(const void *)(x1 + 16 * g), tmask));
                MT_NN_VEC_PW_STEP(xa, xb, g);
            }
            /* lanes: pixel 0 channels 0-3, pixel 1 channels 0-3 */
            u0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a00, a01), _mm256_hadd_epi32(a02, a03));
            u1 = _mm256_hadd_epi32(_mm256_hadd_epi32(a10, a11), _mm256_hadd_epi32(a12, a13));
            raw = _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
            if (all && nc == 4 && np == 2 && (y_cstride == 1 || y_stride == 1)) {
                /* the eight int8 (in range, so the saturating packs keep them): pixel 0 channels 0-3, pixel 1
                 * channels 0-3; NHWC: a word per pixel; channel-planar: two bytes (the two pixels) per channel */
                const __m256i v = mt_nn_vec_fast_out(raw, &f, zo, lo, hi);
                const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
                const __m128i p8 = _mm_packs_epi16(p16, p16);
                int8_t *yp = y + px * y_stride + oc * y_cstride;
                if (y_cstride == 1) {
                    const int32_t w0 = _mm_cvtsi128_si32(p8), w1 = _mm_extract_epi32(p8, 1);
                    memcpy(yp, &w0, 4);
                    memcpy(yp + y_stride, &w1, 4);
                } else {
                    const __m128i pairs = _mm_shuffle_epi8(p8, _mm_setr_epi8(0, 4, 1, 5, 2, 6, 3, 7, 0, 4, 1, 5, 2, 6, 3, 7));
                    const int16_t h0 = (int16_t)_mm_extract_epi16(pairs, 0), h1 = (int16_t)_mm_extract_epi16(pairs, 1);
                    const int16_t h2 = (int16_t)_mm_extract_epi16(pairs, 2), h3 = (int16_t)_mm_extract_epi16(pairs, 3);
                    memcpy(yp, &h0, 2);
                    memcpy(yp + y_cstride, &h1, 2);
                    memcpy(yp + 2 * y_cstride, &h2, 2);
                    memcpy(yp + 3 * y_cstride, &h3, 2);
                }
                continue;
            }
            _mm256_storeu_si256((__m256i *)(void *)o, mt_nn_vec_fast_out(raw, &f, zo, lo, hi));
            if (!all) {
                _mm256_storeu_si256((__m256i *)(void *)r, raw);
            }
            for (pp = 0; pp < np; ++pp) {
                int8_t *yp = y + (px + pp) * y_stride + oc * y_cstride;
                for (k = 0; k < nc; ++k) {
                    yp[k * y_cstride] = ok[k] ? (int8_t)o[4 * pp + k]
                                              : mt_nn_store_s8((int32_t)((uint32_t)r[4 * pp + k] - (uint32_t)kz[k]),
                                                               &s, oc + k);
                }
            }
        }
    }
    return 1;
}

#endif /* MT_NN_PW_VEC_H */
