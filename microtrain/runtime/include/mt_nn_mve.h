/*
 * mt_nn_mve.h: the int8 dot products of the forward kernels with Helium (Armv8.1-M MVE, the
 * Cortex-M55; internal, static inline, included by mt_nn.h when the compiler targets MVE).
 *
 * Each helper computes exactly the integer its portable twin in mt_nn.h / mt_nn_fast.h computes:
 * integer sums are exact and every partial sum fits int32 (MT_NN_MAX_DOT_LENGTH), so the order of
 * the products does not matter and the results are the reference's bit for bit.
 *
 * Per 16 inputs: one load of 16 int8 per operand (VLDRB.S8) and one VMLADAVA.S8 per output (16
 * multiply-adds into a scalar int32 accumulator); the last n % 16 inputs are one more step with
 * predicated loads that zero the lanes past n (0 * w = 0), so there is no scalar tail loop. The input zero point is folded out:
 * sum (x - z) w = sum x w - z * sum w, with sum w from VADDVA.S8 (|sum x w| <= 2^30,
 * |z * sum w| <= 2^30, so no intermediate overflows).
 */
#ifndef MT_NN_MVE_H
#define MT_NN_MVE_H

#include <arm_mve.h>
#include <stdint.h>

/* sum over i < n of (x[i] - z) * w[i] */
static inline int32_t mt_nn_mve_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t z)
{
    int32_t xw = 0, ws = 0, i;
    for (i = 0; i + 16 <= n; i += 16) {
        const int8x16_t vw = vldrbq_s8(w + i);
        xw = vmladavaq_s8(xw, vldrbq_s8(x + i), vw);
        ws = vaddvaq_s8(ws, vw);
    }
    if (i < n) {
        const mve_pred16_t p = vctp8q((uint32_t)(n - i));
        const int8x16_t vw = vldrbq_z_s8(w + i, p);
        xw = vmladavaq_s8(xw, vldrbq_z_s8(x + i, p), vw);
        ws = vaddvaq_s8(ws, vw);
    }
    return xw - z * ws;
}

/* acc[k] += sum over i < n of (x[i] - z) * w_k[i], k = 0, 1 (each x vector feeds both rows) */
static inline void mt_nn_mve_dot2_s8(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n, int32_t z,
                                     int32_t acc[2])
{
    int32_t a0 = 0, a1 = 0, s0 = 0, s1 = 0, i;
    for (i = 0; i + 16 <= n; i += 16) {
        const int8x16_t vx = vldrbq_s8(x + i), v0 = vldrbq_s8(w0 + i), v1 = vldrbq_s8(w1 + i);
        a0 = vmladavaq_s8(a0, vx, v0);
        a1 = vmladavaq_s8(a1, vx, v1);
        s0 = vaddvaq_s8(s0, v0);
        s1 = vaddvaq_s8(s1, v1);
    }
    if (i < n) {
        const mve_pred16_t p = vctp8q((uint32_t)(n - i));
        const int8x16_t vx = vldrbq_z_s8(x + i, p), v0 = vldrbq_z_s8(w0 + i, p), v1 = vldrbq_z_s8(w1 + i, p);
        a0 = vmladavaq_s8(a0, vx, v0);
        a1 = vmladavaq_s8(a1, vx, v1);
        s0 = vaddvaq_s8(s0, v0);
        s1 = vaddvaq_s8(s1, v1);
    }
    acc[0] += a0 - z * s0;
    acc[1] += a1 - z * s1;
}

/* acc[2][2] += x_p . w_c over [i, n), raw int8 products (no zero point), pixels x0, x1 and rows
 * w0, w1: four loads and four VMLADAVA per 16 inputs (64 multiply-adds). */
static inline void mt_nn_mve_dot2x2_s8(const int8_t *x0, const int8_t *x1, const int8_t *w0, const int8_t *w1,
                                       int32_t i, int32_t n, int32_t acc[4])
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    for (; i + 16 <= n; i += 16) {
        const int8x16_t v0 = vldrbq_s8(w0 + i), v1 = vldrbq_s8(w1 + i);
        const int8x16_t u0 = vldrbq_s8(x0 + i), u1 = vldrbq_s8(x1 + i);
        a00 = vmladavaq_s8(a00, u0, v0);
        a01 = vmladavaq_s8(a01, u0, v1);
        a10 = vmladavaq_s8(a10, u1, v0);
        a11 = vmladavaq_s8(a11, u1, v1);
    }
    if (i < n) {
        const mve_pred16_t p = vctp8q((uint32_t)(n - i));
        const int8x16_t v0 = vldrbq_z_s8(w0 + i, p), v1 = vldrbq_z_s8(w1 + i, p);
        const int8x16_t u0 = vldrbq_z_s8(x0 + i, p), u1 = vldrbq_z_s8(x1 + i, p);
        a00 = vmladavaq_s8(a00, u0, v0);
        a01 = vmladavaq_s8(a01, u0, v1);
        a10 = vmladavaq_s8(a10, u1, v0);
        a11 = vmladavaq_s8(a11, u1, v1);
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

#endif /* MT_NN_MVE_H */
