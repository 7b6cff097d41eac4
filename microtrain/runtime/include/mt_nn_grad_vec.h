/*
 * mt_nn_grad_vec.h: the fused block backward's loops (mt_nn_grad.h, mt_inverted_bottleneck_grad_f32.c)
 * with AVX2, for x86-64 hosts (MT_NN_VEC; internal, static inline, included by mt_nn_grad.h).
 *
 * Every element keeps the float32 expression and the summation order its portable loop
 * documents: the vectors run independent elements side by side (one lane per element), each
 * lane doing the same multiplies and adds, in the same order, as the scalar code does for that
 * element; products are VMULPS and sums VADDPS (no FMA: the build keeps -ffp-contract=off and
 * no intrinsic here fuses). Nothing is reassociated.
 *
 * The depthwise input gradient (mt_nn_vec_dw_grad_plane) adds terms the gathering form skips:
 * plane a is copied into a zero-margined (for strides above 1, zero-dilated) plane, so every
 * element of b sums over the whole kernel window, taps descending (= output pixels ascending,
 * the gathering order), eight elements of a row at once. The extra terms are 0 * w = +-0, and
 * s + (+-0) == s for every s but -0; a sum that starts at +0.0f is never -0 (round to nearest:
 * x + y is -0 only if x and y both are), so the sums equal the gathering form's bit for bit.
 */
#ifndef MT_NN_GRAD_VEC_H
#define MT_NN_GRAD_VEC_H

#include <immintrin.h>

/* Columns (projection outputs) and rows (expansion inputs) of the float weight caches on the stack. */
#define MT_NN_VEC_GRAD_MAX 1024
/* Floats of the zero-margined plane of mt_nn_vec_dw_grad_plane. */
#define MT_NN_VEC_DW_GRAD_FLOATS 4096

/* mt_nn_grad_columns (mt_nn_grad.h) with lanes [pixel n: channels 0-3 | pixel n + 1: channels 0-3],
 * two such vectors (four pixels) in flight; channels past nb hold weight 0 and are not stored.
 * Per element: o ascending from 0.0f, s = s + (g[n * O + o] * scale[o]) * (float)w[o * C + k].
 * Returns 0 (nothing written) when O exceeds the cache. */
#define MT_NN_VEC_COL_STEP(x01, x23, imm, o)                                                                     \
    do {                                                                                                         \
        s01 = _mm256_add_ps(s01, _mm256_mul_ps(_mm256_permute_ps(x01, imm), wf[o]));                             \
        s23 = _mm256_add_ps(s23, _mm256_mul_ps(_mm256_permute_ps(x23, imm), wf[o]));                             \
    } while (0)

static MT_NN_NOINLINE int mt_nn_vec_grad_columns(const float *g, int32_t O, const float *scale, const int8_t *w,
                                                 int32_t C, int32_t pixels, float *a, int32_t plane, int32_t nb)
{
    __m256 wf[MT_NN_VEC_GRAD_MAX];
    int32_t o, n, k, j;
    if (O > MT_NN_VEC_GRAD_MAX || nb < 1 || nb > 4) {
        return 0;
    }
    for (o = 0; o < O; ++o) {
        float t[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        for (k = 0; k < nb; ++k) {
            t[k] = t[k + 4] = (float)w[o * C + k];
        }
        wf[o] = _mm256_loadu_ps(t);
    }
    for (n = 0; n < pixels; n += 4) {
        int32_t px[4];
        const float *g0, *g1, *g2, *g3;
        __m256 s01 = _mm256_setzero_ps(), s23 = _mm256_setzero_ps();
        float r[16];
        for (j = 0; j < 4; ++j) {
            px[j] = n + j < pixels ? n + j : pixels - 1; /* past the last pixel: computed again, stored once */
        }
        g0 = g + px[0] * O;
        g1 = g + px[1] * O;
        g2 = g + px[2] * O;
        g3 = g + px[3] * O;
        for (o = 0; o + 8 <= O; o += 8) {
            const __m256 sc = _mm256_loadu_ps(scale + o);
            const __m256 h0 = _mm256_mul_ps(_mm256_loadu_ps(g0 + o), sc), h1 = _mm256_mul_ps(_mm256_loadu_ps(g1 + o), sc);
            const __m256 h2 = _mm256_mul_ps(_mm256_loadu_ps(g2 + o), sc), h3 = _mm256_mul_ps(_mm256_loadu_ps(g3 + o), sc);
            const __m256 x01 = _mm256_permute2f128_ps(h0, h1, 0x20), y01 = _mm256_permute2f128_ps(h0, h1, 0x31);
            const __m256 x23 = _mm256_permute2f128_ps(h2, h3, 0x20), y23 = _mm256_permute2f128_ps(h2, h3, 0x31);
            MT_NN_VEC_COL_STEP(x01, x23, 0x00, o);
            MT_NN_VEC_COL_STEP(x01, x23, 0x55, o + 1);
            MT_NN_VEC_COL_STEP(x01, x23, 0xAA, o + 2);
            MT_NN_VEC_COL_STEP(x01, x23, 0xFF, o + 3);
            MT_NN_VEC_COL_STEP(y01, y23, 0x00, o + 4);
            MT_NN_VEC_COL_STEP(y01, y23, 0x55, o + 5);
            MT_NN_VEC_COL_STEP(y01, y23, 0xAA, o + 6);
            MT_NN_VEC_COL_STEP(y01, y23, 0xFF, o + 7);
        }
        for (; o < O; ++o) {
            const float sc = scale[o];
            const __m256 x01 = _mm256_set_m128(_mm_set1_ps(g1[o] * sc), _mm_set1_ps(g0[o] * sc));
            const __m256 x23 = _mm256_set_m128(_mm_set1_ps(g3[o] * sc), _mm_set1_ps(g2[o] * sc));
            s01 = _mm256_add_ps(s01, _mm256_mul_ps(x01, wf[o]));
            s23 = _mm256_add_ps(s23, _mm256_mul_ps(x23, wf[o]));
        }
        _mm256_storeu_ps(r, s01);
        _mm256_storeu_ps(r + 8, s23);
        for (j = 3; j >= 0; --j) {
            for (k = 0; k < nb; ++k) {
                a[k * plane + px[j]] = r[4 * j + k];
            }
        }
    }
    return 1;
}

/* mt_nn_grad_rows (mt_nn_grad.h), eight input channels i of a pixel at once: per element
 * s = gi[n * I + i]; s = s + gs_k * (float)we[k][i], k ascending; gi[n * I + i] = s, with
 * gs_k = b[k * plane + n] * scale[k]. Returns 0 (nothing written) when I exceeds the cache. */
static MT_NN_NOINLINE int mt_nn_vec_grad_rows(const float *b, int32_t plane, const float *scale,
                                              const int8_t *const *we, int32_t I, int32_t pixels, float *gi,
                                              int32_t nb)
{
    float wf[4][MT_NN_VEC_GRAD_MAX];
    int32_t n, i, k;
    if (I > MT_NN_VEC_GRAD_MAX || nb < 1 || nb > 4) {
        return 0;
    }
    for (k = 0; k < nb; ++k) {
        for (i = 0; i < I; ++i) {
            wf[k][i] = (float)we[k][i];
        }
    }
    for (n = 0; n < pixels; ++n) {
        float gs[4];
        __m256 gv[4];
        float *r = gi + n * I;
        for (k = 0; k < nb; ++k) {
            gs[k] = b[k * plane + n] * scale[k];
            gv[k] = _mm256_set1_ps(gs[k]);
        }
        for (i = 0; i + 8 <= I; i += 8) {
            __m256 v = _mm256_loadu_ps(r + i);
            for (k = 0; k < nb; ++k) {
                v = _mm256_add_ps(v, _mm256_mul_ps(gv[k], _mm256_loadu_ps(wf[k] + i)));
            }
            _mm256_storeu_ps(r + i, v);
        }
        for (; i < I; ++i) {
            float v = r[i];
            for (k = 0; k < nb; ++k) {
                v = v + gs[k] * wf[k][i];
            }
            r[i] = v;
        }
    }
    return 1;
}

/* Plane b of mt_nn_depthwise_plane (mt_inverted_bottleneck_grad_f32.c) from the scaled plane a and
 * the taps wf, through the zero-margined copy described at the top. Returns 0 (nothing written)
 * when the copy exceeds MT_NN_VEC_DW_GRAD_FLOATS. */
static MT_NN_NOINLINE int mt_nn_vec_dw_grad_plane(const mt_conv_params *d, const float *a, const float *wf, float *b)
{
    const int32_t kh = d->kernel_h, kw = d->kernel_w, sh = d->stride_h, sw = d->stride_w;
    const int32_t pt = d->pad_top, pl = d->pad_left, oh = d->out_h, ow = d->out_w, ih = d->in_h, iw = d->in_w;
    const int32_t xw = (iw + 7) & ~7; /* the row's elements, eight at a time */
    const int32_t rows = (ih + pt > oh * sh ? ih + pt : oh * sh) + kh;
    const int32_t cols = (xw + pl > ow * sw ? xw + pl : ow * sw) + kw;
    float D[MT_NN_VEC_DW_GRAD_FLOATS];
    int32_t y, x, ty, tx, oy, ox;
    if ((int64_t)rows * cols > MT_NN_VEC_DW_GRAD_FLOATS) {
        return 0;
    }
    memset(D, 0, sizeof(float) * (size_t)(rows * cols));
    /* output pixel (oy, ox) at D[oy * sh + kh - 1][ox * sw + kw - 1] */
    for (oy = 0; oy < oh; ++oy) {
        for (ox = 0; ox < ow; ++ox) {
            D[(oy * sh + kh - 1) * cols + ox * sw + kw - 1] = a[oy * ow + ox];
        }
    }
    for (y = 0; y < ih; ++y) {
        for (x = 0; x < iw; x += 8) {
            __m256 s = _mm256_setzero_ps();
            for (ty = kh - 1; ty >= 0; --ty) { /* element (y, x): a at D[y + pt - ty + kh - 1][x + pl - tx + kw - 1] */
                const float *dr = D + (y + pt - ty + kh - 1) * cols + x + pl + kw - 1;
                const float *wr = wf + ty * kw;
                for (tx = kw - 1; tx >= 0; --tx) {
                    s = _mm256_add_ps(s, _mm256_mul_ps(_mm256_loadu_ps(dr - tx), _mm256_set1_ps(wr[tx])));
                }
            }
            if (x + 8 <= iw) {
                _mm256_storeu_ps(b + y * iw + x, s);
            } else {
                float t[8];
                int32_t k;
                _mm256_storeu_ps(t, s);
                for (k = 0; x + k < iw; ++k) {
                    b[y * iw + x + k] = t[k];
                }
            }
        }
    }
    return 1;
}

/* The first (I rounded down to 8) input channels of mt_nn_kept_sums (mt_inverted_bottleneck_grad_f32.c):
 * room[q * I + i] = (sum over n ascending, from 0.0f, of b[q][n] * (float)(input[n][i] - z)) * scale,
 * eight i at once. Returns how many channels it did. */
static inline int32_t mt_nn_vec_kept_sums(const float *const *b, int32_t in_plane, const int8_t *input, int32_t I,
                                          int32_t z, float scale, float *room, int32_t nk)
{
    const __m256i zv = _mm256_set1_epi32(z);
    const __m256 sv = _mm256_set1_ps(scale);
    int32_t i, n, q;
    if (nk < 1 || nk > 4) {
        return 0;
    }
    for (i = 0; i + 8 <= I; i += 8) {
        __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (n = 0; n < in_plane; ++n) {
            const __m128i xb = _mm_loadl_epi64((const __m128i *)(const void *)(input + n * I + i));
            const __m256 xf = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepi8_epi32(xb), zv));
            for (q = 0; q < nk; ++q) {
                s[q] = _mm256_add_ps(s[q], _mm256_mul_ps(_mm256_set1_ps(b[q][n]), xf));
            }
        }
        for (q = 0; q < nk; ++q) {
            _mm256_storeu_ps(room + q * I + i, _mm256_mul_ps(s[q], sv));
        }
    }
    return i;
}

#endif /* MT_NN_GRAD_VEC_H */
