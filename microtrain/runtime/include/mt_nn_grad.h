/*
 * mt_nn_grad.h: faster loops for the fp32 backward kernels (internal, static inline).
 *
 * They compute exactly the float32 expressions the kernels document, summed over the same
 * index in the same order; only the data movement changes:
 *   - s + a * b is one VMLA on cores with a single-precision FPU. VMLA is the chained
 *     (unfused) multiply-accumulate of the ARMv7-M FPU: it rounds the product, then the sum,
 *     exactly as the two instructions VMUL + VADD (and as s + a * b on the host, built with
 *     -ffp-contract=off). VFMA, the fused one, is never used.
 *   - int8 weights are converted to float once per pass into a small cache on the stack
 *     (MT_NN_GRAD_CACHE floats) instead of once per multiply-accumulate; (float)w is exact.
 *     The cached passes are not inlined (MT_NN_NOINLINE), so their caches never share a frame.
 */
#ifndef MT_NN_GRAD_H
#define MT_NN_GRAD_H

#include "mt_nn.h"

#if MT_NN_VEC
#include "mt_nn_grad_vec.h"
#endif

#if defined(__ARM_FP) && (__ARM_FP & 4) && defined(__OPTIMIZE__)
#define MT_NN_VMLA 1
#else
#define MT_NN_VMLA 0
#endif

/* s + a * b, the product and the sum each rounded to float32 (no fused multiply-add). */
static inline float mt_nn_fmla(float s, float a, float b)
{
#if MT_NN_VMLA
    __asm__("vmla.f32 %0, %1, %2" : "+t"(s) : "t"(a), "t"(b));
    return s;
#else
    return s + a * b;
#endif
}

/* Floats of the weight cache of one pass (on the stack). */
#define MT_NN_GRAD_CACHE 64

/* Unrolls the short channel loops (nb <= 4) when nb is a constant (GCC 8+). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define MT_NN_GRAD_UNROLL _Pragma("GCC unroll 4")
#else
#define MT_NN_GRAD_UNROLL
#endif

#if defined(__GNUC__)
#define MT_NN_GRAD_ALWAYS inline __attribute__((always_inline))
#else
#define MT_NN_GRAD_ALWAYS inline
#endif
#define MT_NN_GRAD_INLINE static MT_NN_GRAD_ALWAYS

/* nb (1 to 4, a constant at each call) planes of the projection's input gradient: for k < nb,
 * n < pixels,
 *     a[k * plane + n] = sum over o ascending, from 0.0f, of (g[n * O + o] * scale[o]) * (float)w[o * C + k]
 * (w = the projection weights from column c0 on, row stride C). The o range goes in chunks whose
 * nb weight columns are converted once; a[] holds the running sums between chunks. Two pixels at
 * a time share each cached weight. */
MT_NN_GRAD_INLINE void mt_nn_grad_columns_nb(const float *g, int32_t O, const float *scale, const int8_t *w,
                                             int32_t C, int32_t pixels, float *a, int32_t plane, float *wf,
                                             const int nb)
{
    const int32_t chunk = MT_NN_GRAD_CACHE / 4;
    int32_t o0, o, n, k;
    for (o0 = 0; o0 < O; o0 += chunk) {
        const int32_t o1 = O - o0 < chunk ? O : o0 + chunk;
        for (o = o0; o < o1; ++o) {
            MT_NN_GRAD_UNROLL
            for (k = 0; k < nb; ++k) {
                wf[nb * (o - o0) + k] = (float)w[o * C + k];
            }
        }
        for (n = 0; n < pixels; n += 2) {
            const int32_t m = n + 1 < pixels ? n + 1 : n; /* an odd last pixel: computed twice, stored once */
            const float *g0 = g + n * O, *g1 = g + m * O;
            const float *f = wf;
            float s[4] = {0.0f, 0.0f, 0.0f, 0.0f}, t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (o0 > 0) {
                MT_NN_GRAD_UNROLL
                for (k = 0; k < nb; ++k) {
                    s[k] = a[k * plane + n];
                    t[k] = a[k * plane + m];
                }
            }
            for (o = o0; o < o1; ++o) {
                const float sc = scale[o];
                const float gs = g0[o] * sc, gt = g1[o] * sc;
                MT_NN_GRAD_UNROLL
                for (k = 0; k < nb; ++k) {
                    s[k] = mt_nn_fmla(s[k], gs, f[k]);
                    t[k] = mt_nn_fmla(t[k], gt, f[k]);
                }
                f += nb;
            }
            MT_NN_GRAD_UNROLL
            for (k = 0; k < nb; ++k) {
                a[k * plane + m] = t[k];
                a[k * plane + n] = s[k];
            }
        }
    }
}

static MT_NN_NOINLINE void mt_nn_grad_columns(const float *g, int32_t O, const float *scale, const int8_t *w,
                                              int32_t C, int32_t pixels, float *a, int32_t plane, int32_t nb)
{
    float wf[MT_NN_GRAD_CACHE];
#if MT_NN_VEC
    if (mt_nn_vec_grad_columns(g, O, scale, w, C, pixels, a, plane, nb)) {
        return;
    }
#endif
    switch (nb) {
    case 1:
        mt_nn_grad_columns_nb(g, O, scale, w, C, pixels, a, plane, wf, 1);
        break;
    case 2:
        mt_nn_grad_columns_nb(g, O, scale, w, C, pixels, a, plane, wf, 2);
        break;
    case 3:
        mt_nn_grad_columns_nb(g, O, scale, w, C, pixels, a, plane, wf, 3);
        break;
    default:
        mt_nn_grad_columns_nb(g, O, scale, w, C, pixels, a, plane, wf, 4);
        break;
    }
}

/* The share of nb (1 to 4) expanded channels in the block input's gradient: for n < pixels, i < I,
 *     s = gi[n * I + i]; s = s + gs_k * (float)we[k][i] for k = 0 .. nb - 1 in order; gi[n * I + i] = s
 * with gs_k = b[k * plane + n] * scale[k]. The i range goes in chunks whose nb weight rows are
 * converted once; two pixels at a time share each cached weight. */
MT_NN_GRAD_INLINE void mt_nn_grad_rows_nb(const float *b, int32_t plane, const float *scale, const int8_t *const *we,
                                          int32_t I, int32_t pixels, float *gi, float *wf, const int nb)
{
    const int32_t chunk = MT_NN_GRAD_CACHE / 4;
    int32_t i0, i, n, k;
    for (i0 = 0; i0 < I; i0 += chunk) {
        const int32_t i1 = I - i0 < chunk ? I : i0 + chunk;
        for (i = i0; i < i1; ++i) {
            MT_NN_GRAD_UNROLL
            for (k = 0; k < nb; ++k) {
                wf[nb * (i - i0) + k] = (float)we[k][i];
            }
        }
        for (n = 0; n < pixels; n += 2) {
            const int32_t m = n + 1 < pixels ? n + 1 : n;
            float gs[4], gt[4];
            float *r0 = gi + n * I, *r1 = gi + m * I;
            const float *f = wf;
            MT_NN_GRAD_UNROLL
            for (k = 0; k < nb; ++k) {
                gs[k] = b[k * plane + n] * scale[k];
                gt[k] = b[k * plane + m] * scale[k];
            }
            if (m == n) {
                for (i = i0; i < i1; ++i) {
                    float v = r0[i];
                    MT_NN_GRAD_UNROLL
                    for (k = 0; k < nb; ++k) {
                        v = mt_nn_fmla(v, gs[k], f[k]);
                    }
                    r0[i] = v;
                    f += nb;
                }
                continue;
            }
            for (i = i0; i < i1; ++i) {
                float v = r0[i], u = r1[i];
                MT_NN_GRAD_UNROLL
                for (k = 0; k < nb; ++k) {
                    v = mt_nn_fmla(v, gs[k], f[k]);
                    u = mt_nn_fmla(u, gt[k], f[k]);
                }
                r0[i] = v;
                r1[i] = u;
                f += nb;
            }
        }
    }
}

static MT_NN_NOINLINE void mt_nn_grad_rows(const float *b, int32_t plane, const float *scale, const int8_t *const *we,
                                           int32_t I, int32_t pixels, float *gi, int32_t nb)
{
    float wf[MT_NN_GRAD_CACHE];
#if MT_NN_VEC
    if (mt_nn_vec_grad_rows(b, plane, scale, we, I, pixels, gi, nb)) {
        return;
    }
#endif
    switch (nb) {
    case 1:
        mt_nn_grad_rows_nb(b, plane, scale, we, I, pixels, gi, wf, 1);
        break;
    case 2:
        mt_nn_grad_rows_nb(b, plane, scale, we, I, pixels, gi, wf, 2);
        break;
    case 3:
        mt_nn_grad_rows_nb(b, plane, scale, we, I, pixels, gi, wf, 3);
        break;
    default:
        mt_nn_grad_rows_nb(b, plane, scale, we, I, pixels, gi, wf, 4);
        break;
    }
}

#endif /* MT_NN_GRAD_H */
