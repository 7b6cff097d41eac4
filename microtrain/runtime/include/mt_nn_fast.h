/*
 * mt_nn_fast.h: the fast int8 forward path of the runtime (internal, static inline).
 *
 * Two pieces, each bit-exact with the reference arithmetic of mt_nn.h / mt_requantize:
 *
 * 1. The fast output store. The reference store of a conv output is
 *        clamp(requantize(sat32(acc + bias), M, shift) + z_y)
 *    with requantize = RoundingDivideByPOT(SRDHM(x * 2^left, M), right). When left == 0,
 *    right >= 1 (shift <= -1: every conv of the zoo models) and |acc + bias| < 2^30, nothing
 *    saturates and SRDHM(t, M) = (t * M + 2^30) >> 31 = (2t * M + 2^31) >> 32, which is one
 *    SMMULR of 2t (|2t| < 2^31); |SRDHM| <= |t| + 1 <= 2^30, so the rounding shift
 *    (h + 2^(right-1) - [h < 0]) >> right cannot overflow either, and it equals
 *    RoundingDivideByPOT (floor((h + half) / 2^right) for h >= 0, floor((h + half - 1) / 2^right)
 *    below). The constants are derived per channel before a channel's loop (mt_nn_fast_store_of),
 *    which also checks the bound from the dot length: a channel that does not qualify takes the
 *    reference store (mt_nn_store_s8), so every input gives the reference's integers.
 *
 * 2. The 1x1 convolution as a small matrix product (mt_nn_pointwise_fast_s8), blocked over
 *    two output channels x two pixels, with the input zero point folded into a per-channel
 *    weight sum: sum (x - z) w = sum x w - z * sum w, so the inner loop is a raw int8 dot
 *    product. On cores with the DSP extension the two weight rows of a channel pair are
 *    sign-extended once per call into int16 pairs (SXTB16 order, see mt_nn.h) and the inner
 *    loop is one LDM of four weight words, one word of each pixel, four SXTB16 and eight SMLAD
 *    per 4 input channels (16 MACs in 17 instructions); elsewhere (the host) the same blocking
 *    in portable C. Integer sums are exact, so the order of the products does not matter.
 */
#ifndef MT_NN_FAST_H
#define MT_NN_FAST_H

#include "mt_nn.h"

/* The hand-scheduled inner loops (GNU asm) need up to 13 registers: optimised DSP builds only (at -O0
 * r7 is the frame pointer and gcc cannot allocate them); -O0 builds run the C loops. Built and tested
 * at -O2 (the firmware's and the library's flag), also compiled at -O1 and -Os; -Og cannot allocate
 * them: define MT_NN_NO_ASM there (the C loops, the same integers). */
#if MT_NN_DSP && defined(__OPTIMIZE__) && !MT_NN_MVE && !defined(MT_NN_NO_ASM) /* Helium: mt_nn_mve_dot2x2_s8 */
#define MT_NN_DSP_ASM 1
#else
#define MT_NN_DSP_ASM 0
#endif

/* Inlined into every caller, so that a constant `full` selects the clamp at compile time (written
 * `static MT_NN_INLINE`: the storage class stays visible where a helper is defined). */
#if defined(__GNUC__)
#define MT_NN_INLINE inline __attribute__((always_inline))
#else
#define MT_NN_INLINE inline
#endif

/* SMMULR: (a * b + 2^31) >> 32, the rounding high multiply. */
static inline int32_t mt_nn_smmulr(int32_t a, int32_t b)
{
#if MT_NN_DSP
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}

/* The constants of one channel's fast store. */
typedef struct {
    int32_t bias2;      /* 2 * (bias - folded), folded = z_x * sum of the channel's weights (or 0) */
    int32_t multiplier; /* M */
    int32_t round;      /* 2^(right - 1) */
    int32_t right;      /* -shift, >= 1 */
} mt_nn_fast_store;

#define MT_NN_FAST_LIMIT ((int64_t)1 << 30)

static inline int64_t mt_nn_abs64(int64_t v)
{
    return v < 0 ? -v : v;
}

/* Whether the outputs of a channel may take the fast store, and its constants. The kernel
 * accumulates raw = sum of its products; the reference value is raw - folded (folded = z_x * sum w
 * when the zero point is folded out of the inner loop, else 0). raw_bound bounds |raw| and
 * true_bound |raw - folded| (the reference accumulator) for every possible input. */
static inline int mt_nn_fast_store_of(int32_t bias, int64_t folded, int32_t multiplier, int32_t shift,
                                      int64_t raw_bound, int64_t true_bound, mt_nn_fast_store *f)
{
    const int64_t beff = (int64_t)bias - folded;
    if (shift > -1 || shift < -31 || multiplier < 0) {
        return 0;
    }
    /* |raw - folded + bias| < 2^30 (no saturation, 2t fits) and raw + beff cannot overflow int32 */
    if (mt_nn_abs64(bias) + true_bound >= MT_NN_FAST_LIMIT || mt_nn_abs64(beff) + raw_bound >= MT_NN_FAST_LIMIT) {
        return 0;
    }
    f->bias2 = (int32_t)(2 * beff);
    f->multiplier = multiplier;
    f->right = -shift;
    f->round = (int32_t)1 << (-shift - 1);
    return 1;
}

/* A channel whose reference output is one constant c for every input (a dead channel: a bias at the
 * int32 limit or a tiny scale) as fast-store constants: {bias2 0, M 0, round 2 (c - z) + 1, right 1}
 * give ((0 + round) >> 1) + z = c in mt_nn_fast_out, and the folded store's rz = 2c + 1 (odd, so
 * MT_NN_STORE_U8's rounding correction cannot change it) gives c too. The reference store
 * (sat32(acc + bias), requantize with M >= 0, + z, clamp) is monotone in the accumulator, so it is
 * constant when it is equal at -true_bound and true_bound (|acc| <= true_bound < 2^31). */
static inline int mt_nn_fast_const_of(const mt_nn_store *s, int32_t c, int64_t true_bound, int32_t z,
                                      mt_nn_fast_store *f)
{
    const int32_t lo = mt_nn_store_s8((int32_t)-true_bound, s, c), hi = mt_nn_store_s8((int32_t)true_bound, s, c);
    if (lo != hi || s->multiplier[c] < 0) {
        return 0;
    }
    f->bias2 = 0;
    f->multiplier = 0;
    f->round = 2 * (lo - z) + 1;
    f->right = 1;
    return 1;
}

/* requantize(sat32(true + bias), M, shift) for raw = true + folded (see the top of the file). */
static inline int32_t mt_nn_fast_requantize(int32_t raw, const mt_nn_fast_store *f)
{
    const int32_t h = mt_nn_smmulr(f->bias2 + raw * 2, f->multiplier);
    return (h + f->round + (h >> 31)) >> f->right;
}

/* Offset and clamp of a requantized value r (|r| <= 2^30, so r + z cannot overflow). With
 * full = 1 (act range [-128, 127], the caller's constant) one SSAT on DSP cores. */
static inline int8_t mt_nn_fast_clamp(int32_t r, int32_t zero_point, int32_t act_min, int32_t act_max, int full)
{
    int32_t v = r + zero_point;
#if MT_NN_DSP
    if (full) {
        return (int8_t)__ssat(v, 8);
    }
#else
    if (full) {
        return (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
    }
#endif
    return (int8_t)(v < act_min ? act_min : v > act_max ? act_max : v);
}

/* ---------------------------------------------------------------------------------------- */
/* 1x1 convolution                                                                          */
/* ---------------------------------------------------------------------------------------- */

/* Longest input row whose two pre-extended weight rows fit the stack buffer of the standalone
 * kernel (4 bytes per input channel); longer rows are extended in chunks of half of it, the other
 * half holding the sums (mt_nn_pointwise_pair_chunked_s8). 96, not more: that buffer sits under the
 * 1x1 kernel's frame at the runtime's deepest forward stack. */
#define MT_NN_PW_EXTEND_MAX 96

/* The sum of a weight row (for the folded zero point); on DSP cores four bytes per word load
 * (SXTB16 pairs summed by SMLAD against 1 in both lanes: an exact integer sum). */
static inline int32_t mt_nn_row_sum_s8(const int8_t *w, int32_t n)
{
    int32_t s = 0, i = 0;
#if MT_NN_DSP && !MT_NN_MVE
    for (; i + 4 <= n; i += 4) {
        const uint32_t v = mt_nn_load4(w + i);
        s = __smlad(__sxtb16((int32_t)v), 0x00010001, s);
        s = __smlad(mt_nn_sxtb16_ror8(v), 0x00010001, s);
    }
#endif
    for (; i < n; ++i) {
        s += w[i];
    }
    return s;
}

#if MT_NN_DSP_ASM
/* Rows w0, w1 (n4 = n rounded down to 4) as int16 pairs: per 4 inputs the words
 * [w0 (0,2)] [w0 (1,3)] [w1 (0,2)] [w1 (1,3)], the lanes SXTB16 / SXTB16 ROR 8 give of x; with
 * dbl each lane doubled (SADD16: 2w fits int16), for the doubled sums of MT_NN_STORE_U8. */
static inline void mt_nn_extend2_s8(const int8_t *w0, const int8_t *w1, int32_t n4, int32_t *wb, int dbl)
{
    int32_t i;
    for (i = 0; i < n4; i += 4) {
        uint32_t v = mt_nn_load4(w0 + i), u = mt_nn_load4(w1 + i);
        int32_t a = __sxtb16((int32_t)v), b = mt_nn_sxtb16_ror8(v), c = __sxtb16((int32_t)u), d = mt_nn_sxtb16_ror8(u);
        if (dbl) {
            a = __sadd16(a, a);
            b = __sadd16(b, b);
            c = __sadd16(c, c);
            d = __sadd16(d, d);
        }
        wb[0] = a;
        wb[1] = b;
        wb[2] = c;
        wb[3] = d;
        wb += 4;
    }
}

/* mt_nn_extend2_s8 over ne = n rounded up to 4 inputs: the last group's inputs past n get weight 0
 * (their x bytes, read from the caller's padded rows, then add nothing). */
static inline void mt_nn_extend2_pad_s8(const int8_t *w0, const int8_t *w1, int32_t n, int32_t ne, int32_t *wb,
                                        int dbl)
{
    const int32_t n4 = n & ~3;
    mt_nn_extend2_s8(w0, w1, n4, wb, dbl);
    if (ne > n4) {
        int8_t a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
        int32_t i;
        for (i = n4; i < n; ++i) {
            a[i - n4] = w0[i];
            b[i - n4] = w1[i];
        }
        mt_nn_extend2_s8(a, b, 4, wb + n4, dbl);
    }
}

/* acc[2][2] += x_p . w_c for pixels x0, x1 and the extended rows in wb, over n4 inputs
 * (n4 > 0, a multiple of 4). Per 4 inputs one LDM of four weight words, one word of each
 * pixel, four SXTB16, eight SMLAD (16 MACs in 15 instructions), unrolled twice (an odd count
 * of 4-input steps enters at the second half); the loop end is read from memory so that the
 * asm needs 13 registers (r7 may be the frame pointer, at -O0). */
#define MT_NN_DOT2X2_STEP                                                                                        \
    "ldmia %[wb]!, {r4, r5, r6, r8}\n\t"                                                                       \
    "ldr %[t0], [%[x0]], #4\n\t"                                                                              \
    "sxtb16 %[t1], %[t0]\n\t"                                                                                 \
    "sxtb16 %[t0], %[t0], ror #8\n\t"                                                                         \
    "smlad %[a00], %[t1], r4, %[a00]\n\t"                                                                     \
    "smlad %[a00], %[t0], r5, %[a00]\n\t"                                                                     \
    "smlad %[a01], %[t1], r6, %[a01]\n\t"                                                                     \
    "smlad %[a01], %[t0], r8, %[a01]\n\t"                                                                     \
    "ldr %[t0], [%[x1]], #4\n\t"                                                                              \
    "sxtb16 %[t1], %[t0]\n\t"                                                                                 \
    "sxtb16 %[t0], %[t0], ror #8\n\t"                                                                         \
    "smlad %[a10], %[t1], r4, %[a10]\n\t"                                                                     \
    "smlad %[a10], %[t0], r5, %[a10]\n\t"                                                                     \
    "smlad %[a11], %[t1], r6, %[a11]\n\t"                                                                     \
    "smlad %[a11], %[t0], r8, %[a11]\n\t"

static inline void mt_nn_dot2x2_ext_s8(const int8_t *x0, const int8_t *x1, const int32_t *wb, int32_t n4,
                                       int32_t acc[4])
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    int32_t t0 = n4, t1;
    const int8_t *end = x0 + n4;
    __asm__ volatile("tst %[t0], #4\n\t"
                     "bne 2f\n\t"
                     "1:\n\t" MT_NN_DOT2X2_STEP "2:\n\t" MT_NN_DOT2X2_STEP "ldr %[t0], %[end]\n\t"
                     "cmp %[x0], %[t0]\n\t"
                     "bne 1b\n\t"
                     : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [wb] "+r"(wb),
                       [x0] "+r"(x0), [x1] "+r"(x1), [t0] "+&r"(t0), [t1] "=&r"(t1)
                     : [end] "m"(end)
                     : "r4", "r5", "r6", "r8", "cc", "memory");
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}
#endif

/* The fast store (mt_nn_fast_out) of an output with the full act range [-128, 127], the output
 * zero point folded into the rounding constant: with rz = 2^(right - 1) + z_y * 2^right,
 *     clamp(((h + 2^(right-1) + [h < 0]) >> right) + z_y) = SSAT8((h + rz + [h < 0]) >> right)
 * (adding z_y * 2^right before an arithmetic shift adds exactly z_y after it). |h| <= 2^30
 * (mt_nn_fast_store_of) and right <= MT_NN_ZFOLD_MAX_RIGHT keep every sum inside int32:
 * 2^30 + 2^21 + 128 * 2^22 < 2^31. */
#define MT_NN_ZFOLD_MAX_RIGHT 22
#if MT_NN_DSP_ASM
/* That store on u = bias2 + 2 raw (the accumulator started at bias2 and summed doubled weights),
 * h = SMMULR(u, M), two steps merged: SMMLAR adds rz to the rounded high product (h + rz, exactly), and
 * the [h < 0] correction takes the sign of u: u >= 0 gives h >= 0 (M >= 0); u < 0 gives h <= 0,
 * and where h = 0 the correction changes nothing, (rz - 1) >> right = rz >> right, as
 * rz = 2^(right-1) + z_y 2^right is no multiple of 2^right. The same integers in 4 instructions
 * (6). Operand a holds u on entry and the int8 on exit; r5, r6, r8 hold multiplier, rz, right;
 * r4 is scratch. */
#define MT_NN_STORE_U8(a)                                                                                         \
    "smmlar r4, %[" a "], r5, r6\n\t"                                                                             \
    "add r4, r4, %[" a "], asr #31\n\t"                                                                           \
    "asr r4, r4, r8\n\t"                                                                                          \
    "ssat %[" a "], #8, r4\n\t"

/* The loop of mt_nn_pointwise_pair_fast_s8 over the pixel pairs [x, x_end) (x_end - x an even
 * number of x_stride), written out: per pair the 2x2 dot products of MT_NN_DOT2X2_STEP over the
 * n4 (= n, a multiple of 4, > 0) extended inputs at wb (doubled weights), the accumulators
 * started at the pair's bias2 words (kz[-2], kz[-1]), then the four outputs with the folded store
 * (MT_NN_STORE_U8; kz: multiplier, rz, right of each channel) to y[0], y[yc], y[ys], y[ys + yc],
 * y advancing two pixels. Only 13 registers (the loop state that does not fit stays in memory
 * operands). */
#define MT_NN_DOT2X2_STEP_P                                                                                      \
    "ldmia %[p1]!, {r4, r5, r6, r8}\n\t"                                                                       \
    "ldr %[p3], [%[x0]], #4\n\t"                                                                              \
    "sxtb16 %[p4], %[p3]\n\t"                                                                                 \
    "sxtb16 %[p3], %[p3], ror #8\n\t"                                                                         \
    "smlad %[a00], %[p4], r4, %[a00]\n\t"                                                                     \
    "smlad %[a00], %[p3], r5, %[a00]\n\t"                                                                     \
    "smlad %[a01], %[p4], r6, %[a01]\n\t"                                                                     \
    "smlad %[a01], %[p3], r8, %[a01]\n\t"                                                                     \
    "ldr %[p3], [%[p2]], #4\n\t"                                                                              \
    "sxtb16 %[p4], %[p3]\n\t"                                                                                 \
    "sxtb16 %[p3], %[p3], ror #8\n\t"                                                                         \
    "smlad %[a10], %[p4], r4, %[a10]\n\t"                                                                     \
    "smlad %[a10], %[p3], r5, %[a10]\n\t"                                                                     \
    "smlad %[a11], %[p4], r6, %[a11]\n\t"                                                                     \
    "smlad %[a11], %[p3], r8, %[a11]\n\t"

typedef struct {
    const int32_t *wb, *wb_end, *kz;
    const int8_t *x_end;
    int32_t n4, x_stride, x_advance, ys, yc;
    int8_t *y;
} mt_nn_pw_loop;

/* The dot products of the pair loop: a loop over n4 / 4 steps (any n4), or the steps written out
 * for the short rows of the early layers (n4 = 8 ... 32: no loop test). */
#define MT_NN_PW_DOT_LOOP                                                                                         \
    "ldr %[p3], %[n4]\n\t"                                                                                        \
    "tst %[p3], #4\n\t"                                                                                           \
    "bne 3f\n\t"                                                                                                  \
    "2:\n\t" MT_NN_DOT2X2_STEP_P "3:\n\t" MT_NN_DOT2X2_STEP_P "ldr %[p3], %[wb_end]\n\t"                          \
    "cmp %[p1], %[p3]\n\t"                                                                                        \
    "bne 2b\n\t"
#define MT_NN_PW_DOT2 MT_NN_DOT2X2_STEP_P MT_NN_DOT2X2_STEP_P
#define MT_NN_PW_DOT3 MT_NN_PW_DOT2 MT_NN_DOT2X2_STEP_P
#define MT_NN_PW_DOT4 MT_NN_PW_DOT2 MT_NN_PW_DOT2
#define MT_NN_PW_DOT5 MT_NN_PW_DOT4 MT_NN_DOT2X2_STEP_P
#define MT_NN_PW_DOT6 MT_NN_PW_DOT4 MT_NN_PW_DOT2
#define MT_NN_PW_DOT7 MT_NN_PW_DOT4 MT_NN_PW_DOT3
#define MT_NN_PW_DOT8 MT_NN_PW_DOT4 MT_NN_PW_DOT4

#define MT_NN_PW_PAIRS_ASM(dot)                                                                                   \
    __asm__ volatile("1:\n\t"                                                                                     \
                     "ldr %[p1], %[wb]\n\t"                                                                       \
                     "ldr %[p2], %[xs]\n\t"                                                                       \
                     "add %[p2], %[x0], %[p2]\n\t"                                                                \
                     "ldr %[p3], %[kz]\n\t"                                                                       \
                     "ldrd %[a00], %[a01], [%[p3], #-8]\n\t"                                                      \
                     "mov %[a10], %[a00]\n\t"                                                                     \
                     "mov %[a11], %[a01]\n\t" dot "ldr %[p1], %[kz]\n\t"                                          \
                     "ldr %[p2], %[y]\n\t"                                                                        \
                     "ldr %[p3], %[ys]\n\t"                                                                       \
                     "ldr %[p4], %[yc]\n\t"                                                                       \
                     "ldmia %[p1]!, {r5, r6, r8}\n\t" MT_NN_STORE_U8("a00") MT_NN_STORE_U8("a10")                  \
                     "strb %[a00], [%[p2]]\n\t"                                                                   \
                     "strb %[a10], [%[p2], %[p3]]\n\t"                                                            \
                     "ldmia %[p1]!, {r5, r6, r8}\n\t" MT_NN_STORE_U8("a01") MT_NN_STORE_U8("a11")                  \
                     "strb %[a01], [%[p2], %[p4]]\n\t"                                                            \
                     "add %[p1], %[p2], %[p3]\n\t"                                                                \
                     "strb %[a11], [%[p1], %[p4]]\n\t"                                                            \
                     "add %[p2], %[p2], %[p3], lsl #1\n\t"                                                        \
                     "str %[p2], %[y]\n\t"                                                                        \
                     "ldr %[p3], %[xadv]\n\t"                                                                     \
                     "add %[x0], %[x0], %[p3]\n\t"                                                                \
                     "ldr %[p3], %[x_end]\n\t"                                                                    \
                     "cmp %[x0], %[p3]\n\t"                                                                       \
                     "bne 1b\n\t"                                                                                 \
                     : [a00] "=&r"(a00), [a01] "=&r"(a01), [a10] "=&r"(a10), [a11] "=&r"(a11), [x0] "+&r"(x),      \
                       [p1] "=&r"(p1), [p2] "=&r"(p2), [p3] "=&r"(p3), [p4] "=&r"(p4), [y] "+m"(L->y)             \
                     : [wb] "m"(L->wb), [wb_end] "m"(L->wb_end), [kz] "m"(L->kz), [x_end] "m"(L->x_end),          \
                       [n4] "m"(L->n4), [xs] "m"(L->x_stride), [xadv] "m"(L->x_advance), [ys] "m"(L->ys),          \
                       [yc] "m"(L->yc)                                                                            \
                     : "r4", "r5", "r6", "r8", "cc", "memory")

static MT_NN_INLINE void mt_nn_pointwise_pairs_asm(const int8_t *x, mt_nn_pw_loop *L)
{
    int32_t a00, a01, a10, a11, p1, p2, p3, p4;
    switch (L->n4) {
    case 8:
        MT_NN_PW_PAIRS_ASM(MT_NN_PW_DOT2);
        break;
    case 12:
        MT_NN_PW_PAIRS_ASM(MT_NN_PW_DOT3);
        break;
    case 16:
        MT_NN_PW_PAIRS_ASM(MT_NN_PW_DOT4);
        break;
    case 20:
        MT_NN_PW_PAIRS_ASM(MT_NN_PW_DOT5);
        break;
    case 24:
        MT_NN_PW_PAIRS_ASM(MT_NN_PW_DOT6);
        break;
    case 28:
        MT_NN_PW_PAIRS_ASM(MT_NN_PW_DOT7);
        break;
    case 32:
        MT_NN_PW_PAIRS_ASM(MT_NN_PW_DOT8);
        break;
    default:
        MT_NN_PW_PAIRS_ASM(MT_NN_PW_DOT_LOOP);
        break;
    }
}
#endif

/* The words {bias2, multiplier, rz, right} of the folded store (MT_NN_STORE_U8) for channel f
 * and output zero point z, full act range (0: the caller takes mt_nn_fast_out). raw_bound bounds
 * |raw|. A right shift past MT_NN_ZFOLD_MAX_RIGHT (a dead channel: tiny scale, rz would overflow)
 * is taken when its output is one constant c for every raw: the requantized value
 * (h + round + [h < 0]) >> right is monotone in t = raw + bias2 / 2 (h = SMMULR(2t, M), M >= 0),
 * so it is constant when it is equal at t = bias2 / 2 -+ raw_bound; the words {bias2, 0, 2c + 1, 1}
 * give SSAT8((2c + 1 - [u < 0]) >> 1) = SSAT8(c) for every u. */
static inline int mt_nn_zfold_of(const mt_nn_fast_store *f, int32_t z, int64_t raw_bound, int32_t k[4])
{
    if (f->right > MT_NN_ZFOLD_MAX_RIGHT) {
        /* |bias2 / 2| + raw_bound < 2^30 (mt_nn_fast_store_of): both ends fit int32, 2t too */
        const int32_t lo = (int32_t)(f->bias2 / 2 - raw_bound), hi = (int32_t)(f->bias2 / 2 + raw_bound);
        const int32_t hl = mt_nn_smmulr(2 * lo, f->multiplier), hh = mt_nn_smmulr(2 * hi, f->multiplier);
        const int32_t ql = (hl + f->round + (hl >> 31)) >> f->right, qh = (hh + f->round + (hh >> 31)) >> f->right;
        if (ql != qh) {
            return 0;
        }
        k[0] = f->bias2;
        k[1] = 0;
        k[2] = 2 * (ql + z) + 1;
        k[3] = 1;
        return 1;
    }
    k[0] = f->bias2;
    k[1] = f->multiplier;
    k[2] = f->round + z * ((int32_t)1 << f->right);
    k[3] = f->right;
    return 1;
}

/* The set-up of a 1x1 channel pair: per call (q->pack NULL) or once, at compile time, into the
 * conv's pack (mt_conv_pack_s8), by the same function. Pack format, int32 words (little-endian;
 * the same on every host and target):
 *     {MT_NN_PACK_PW, n}, then per channel pair (c, c + 1), c = 0, 2, ... < out_c - 1, nine words
 *     {status, bias2 of c, bias2 of c + 1, a, b, right of c, a, b, right of c + 1}
 * n: the row length (kernel_h * kernel_w * in_c); an odd last channel has no words (reference store).
 * status 0: the reference store for the pair (the other words unused); 1: the fast store,
 * (a, b, right) = (multiplier, round, right) of mt_nn_fast_store_of / mt_nn_fast_const_of (bias2
 * with z_x * the row sum folded in); 2: those constants also allow the folded store, and (a, b,
 * right) are mt_nn_zfold_of's {multiplier, rz, right}: the asm pairs read words 1-8 in place (kz),
 * and the fast store's constants are {bias2, a, b - z_y 2^right, right} (mt_nn_pw_pair_store: the
 * same integers, see mt_nn_zfold_of). */
#define MT_NN_PACK_PW 0x31777070 /* "ppw1" */
#define MT_NN_PACK_PW_WORDS 9
/* With the pre-extended weight rows (mt_conv_pack_s8's `extended`): the tag MT_NN_PACK_PWX, and after
 * the pair words, per channel pair ne = n rounded up to 4 words: rows c, c + 1 as doubled int16
 * lanes, per 4 inputs [w_c (0, 2)] [w_c (1, 3)] [w_c+1 (0, 2)] [w_c+1 (1, 3)] (zero past n), the
 * layout mt_nn_extend2_pad_s8 writes with dbl (mt_nn_extend2_ref_s8). A pair of status 2 then runs
 * the asm pairs on them in flash: no per-call extension, any row length. Flash: 2 bytes per weight. */
#define MT_NN_PACK_PWX 0x32777070 /* "ppw2" */
/* The rows alone, for a conv whose bias is trained (its pair words would change with it: the kernel
 * derives them per call): {MT_NN_PACK_PWR, n}, then the extended rows as above. */
#define MT_NN_PACK_PWR 0x33777070 /* "ppw3" */

/* Two int16 lanes in a word: lo in bits 0-15, hi in bits 16-31. */
static inline int32_t mt_nn_pack16(int32_t lo, int32_t hi)
{
    return (int32_t)((uint32_t)(uint16_t)(int16_t)lo | ((uint32_t)(uint16_t)(int16_t)hi << 16));
}

/* Rows w0, w1 (n inputs) extended as mt_nn_extend2_pad_s8 (w0, w1, n, ne = n rounded up to 4, wb, 1)
 * does on DSP cores, in portable C (the pack is computed on the host). */
static inline void mt_nn_extend2_ref_s8(const int8_t *w0, const int8_t *w1, int32_t n, int32_t *wb)
{
    int32_t i, j;
    for (i = 0; i < n; i += 4) {
        int32_t v[2][4];
        for (j = 0; j < 4; ++j) {
            v[0][j] = i + j < n ? 2 * w0[i + j] : 0;
            v[1][j] = i + j < n ? 2 * w1[i + j] : 0;
        }
        *wb++ = mt_nn_pack16(v[0][0], v[0][2]);
        *wb++ = mt_nn_pack16(v[0][1], v[0][3]);
        *wb++ = mt_nn_pack16(v[1][0], v[1][2]);
        *wb++ = mt_nn_pack16(v[1][1], v[1][3]);
    }
}

/* The nine words of channel pair (c, c + 1) (rows w0, w1 of n inputs, input zero point z_x, the
 * store s) into e; fold: whether to derive the folded store's words (status 2 where they exist).
 * Returns the status. */
static inline int32_t mt_nn_pw_pair_words(const mt_nn_store *s, const int8_t *w0, const int8_t *w1, int32_t n,
                                          int32_t c, int32_t z_x, int fold, int32_t e[MT_NN_PACK_PW_WORDS])
{
    const int64_t raw_bound = (int64_t)n * 16384, true_bound = (int64_t)n * 32640;
    mt_nn_fast_store f[2];
    int32_t k, kz[2][4];
    for (k = 0; k < 2; ++k) {
        const int32_t b = s->bias != NULL ? s->bias[c + k] : 0;
        if (!mt_nn_fast_store_of(b, (int64_t)z_x * mt_nn_row_sum_s8(k ? w1 : w0, n), s->multiplier[c + k],
                                 s->shift[c + k], raw_bound, true_bound, &f[k]) &&
            !mt_nn_fast_const_of(s, c + k, true_bound, s->zero_point, &f[k])) {
            e[0] = 0;
            return 0;
        }
    }
    e[1] = f[0].bias2;
    e[2] = f[1].bias2;
    if (fold && mt_nn_zfold_of(&f[0], s->zero_point, raw_bound, kz[0]) &&
        mt_nn_zfold_of(&f[1], s->zero_point, raw_bound, kz[1])) {
        for (k = 0; k < 2; ++k) {
            e[3 + 3 * k] = kz[k][1];
            e[4 + 3 * k] = kz[k][2];
            e[5 + 3 * k] = kz[k][3];
        }
        e[0] = 2;
        return 2;
    }
    for (k = 0; k < 2; ++k) {
        e[3 + 3 * k] = f[k].multiplier;
        e[4 + 3 * k] = f[k].round;
        e[5 + 3 * k] = f[k].right;
    }
    e[0] = 1;
    return 1;
}

/* The fast-store constants {bias2, multiplier, round, right} that give the integers of the folded
 * store's words {bias2, multiplier, rz, right} (mt_nn_zfold_of, output zero point z_y): round =
 * rz - z_y 2^right; for a dead channel's words {bias2, 0, 2 (q + z_y) + 1, 1}, {bias2, 0, 2 q + 1, 1}
 * give q for every accumulator, as the channel's own constants do (mt_nn_zfold_of checked it). */
static inline void mt_nn_zfold_store(int32_t bias2, const int32_t *k, int32_t z_y, mt_nn_fast_store *f)
{
    f->bias2 = bias2;
    f->multiplier = k[0];
    f->right = k[2];
    f->round = k[1] - z_y * ((int32_t)1 << k[2]);
}

/* The fast-store constants of channel c + k of a pair's words e (status 1 or 2), output zero point z_y. */
static inline void mt_nn_pw_pair_store(const int32_t *e, int32_t k, int32_t z_y, mt_nn_fast_store *f)
{
    const int32_t *w = e + 3 + 3 * k;
    if (e[0] == 2) {
        mt_nn_zfold_store(e[1 + k], w, z_y, f);
        return;
    }
    f->bias2 = e[1 + k];
    f->multiplier = w[0];
    f->round = w[1];
    f->right = w[2];
}

/* The pair words of a pack for a 1x1 of n-long rows (NULL: none, or a pack of another kind or length). */
static inline const int32_t *mt_nn_pw_pack_of(const int32_t *pack, int32_t n)
{
    return pack != NULL && (pack[0] == MT_NN_PACK_PW || pack[0] == MT_NN_PACK_PWX) && pack[1] == n ? pack + 2 : NULL;
}

/* acc[2][2] += x_p . w_c, raw int8 products, for pixels x0, x1 and rows w0, w1 over [i, n). */
static inline void mt_nn_dot2x2_s8(const int8_t *x0, const int8_t *x1, const int8_t *w0, const int8_t *w1, int32_t i,
                                   int32_t n, int32_t acc[4])
{
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
#if MT_NN_MVE
    mt_nn_mve_dot2x2_s8(x0, x1, w0, w1, i, n, acc);
    return;
#elif MT_NN_DSP_ASM
    if (i + 4 <= n) { /* rows too long to pre-extend: the weights extended on the fly, each x word loaded
                        * twice (once per lane pair) so that the loop fits 13 registers */
        const int8_t *xa = x0 + i, *xb = x1 + i, *wa = w0 + i, *wc = w1 + i;
        const int8_t *end = xa + ((n - i) & ~3);
        int32_t t0;
        __asm__ volatile("1:\n\t"
                         "ldr r4, [%[wa]], #4\n\t"
                         "sxtb16 r5, r4, ror #8\n\t"
                         "sxtb16 r4, r4\n\t"
                         "ldr r6, [%[wc]], #4\n\t"
                         "sxtb16 r8, r6, ror #8\n\t"
                         "sxtb16 r6, r6\n\t"
                         "ldr %[t0], [%[xa]]\n\t"
                         "sxtb16 %[t0], %[t0]\n\t"
                         "smlad %[a00], %[t0], r4, %[a00]\n\t"
                         "smlad %[a01], %[t0], r6, %[a01]\n\t"
                         "ldr %[t0], [%[xa]], #4\n\t"
                         "sxtb16 %[t0], %[t0], ror #8\n\t"
                         "smlad %[a00], %[t0], r5, %[a00]\n\t"
                         "smlad %[a01], %[t0], r8, %[a01]\n\t"
                         "ldr %[t0], [%[xb]]\n\t"
                         "sxtb16 %[t0], %[t0]\n\t"
                         "smlad %[a10], %[t0], r4, %[a10]\n\t"
                         "smlad %[a11], %[t0], r6, %[a11]\n\t"
                         "ldr %[t0], [%[xb]], #4\n\t"
                         "sxtb16 %[t0], %[t0], ror #8\n\t"
                         "smlad %[a10], %[t0], r5, %[a10]\n\t"
                         "smlad %[a11], %[t0], r8, %[a11]\n\t"
                         "ldr %[t0], %[end]\n\t"
                         "cmp %[xa], %[t0]\n\t"
                         "bne 1b\n\t"
                         : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [xa] "+r"(xa),
                           [xb] "+r"(xb), [wa] "+r"(wa), [wc] "+r"(wc), [t0] "=&r"(t0)
                         : [end] "m"(end)
                         : "r4", "r5", "r6", "r8", "cc", "memory");
        i += (n - i) & ~3;
    }
#elif MT_NN_DSP
    for (; i + 4 <= n; i += 4) {
        uint32_t v = mt_nn_load4(w0 + i);
        const int32_t wa = __sxtb16((int32_t)v), wb = mt_nn_sxtb16_ror8(v);
        uint32_t u = mt_nn_load4(w1 + i);
        const int32_t ua = __sxtb16((int32_t)u), ub = mt_nn_sxtb16_ror8(u);
        v = mt_nn_load4(x0 + i);
        int32_t xa = __sxtb16((int32_t)v), xb = mt_nn_sxtb16_ror8(v);
        a00 = __smlad(xa, wa, __smlad(xb, wb, a00));
        a01 = __smlad(xa, ua, __smlad(xb, ub, a01));
        v = mt_nn_load4(x1 + i);
        xa = __sxtb16((int32_t)v);
        xb = mt_nn_sxtb16_ror8(v);
        a10 = __smlad(xa, wa, __smlad(xb, wb, a10));
        a11 = __smlad(xa, ua, __smlad(xb, ub, a11));
    }
#endif
    for (; i < n; ++i) {
        const int32_t p = x0[i], r = x1[i], u = w0[i], v = w1[i];
        a00 += p * u;
        a01 += p * v;
        a10 += r * u;
        a11 += r * v;
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* The fast store of one output: requantize (mt_nn_fast_requantize), offset, clamp. */
static MT_NN_INLINE int8_t mt_nn_fast_out(int32_t raw, int32_t bias2, int32_t multiplier, int32_t round, int32_t right,
                                   int32_t zero_point, int32_t act_min, int32_t act_max, int full)
{
    const int32_t h = mt_nn_smmulr(bias2 + raw * 2, multiplier);
    return mt_nn_fast_clamp((h + round + (h >> 31)) >> right, zero_point, act_min, act_max, full);
}

/* The outputs of one channel pair (c, c + 1) over pixels [0, pixels) with the fast store:
 * x pixel p at x + p * x_stride; output (p, c + k) at y + p * y_stride + k * y_cstride; wb the
 * extended rows (or NULL); e the pair's words (mt_nn_pw_pair_words, status 1 or 2), f scratch for two
 * fast stores. full: act range
 * [-128, 127] (a constant at each call site). kz: NULL, or (status 2, full range, wb doubled, ne >= n)
 * e + 3: the pair's store words {bias2 of c, of c + 1, then multiplier, rz, right of c, of c + 1}
 * from kz - 2. ne: the inputs the extended rows cover (n rounded down to 4, or up to 4 when the x
 * rows are padded). */
static MT_NN_INLINE void mt_nn_pointwise_pair_fast_s8(const int8_t *x, int32_t x_stride, int32_t pixels, const int8_t *w0,
                                               const int8_t *w1, const int32_t *wb, int32_t n, const int32_t *e,
                                               mt_nn_fast_store *f, const mt_conv_params *p, int8_t *y,
                                               int32_t y_stride, int32_t y_cstride, int full, const int32_t *kz,
                                               int32_t ne)
{
    const int32_t n4 = wb != NULL ? ne : 0;
    const int32_t z = p->output_zero_point, lo = p->act_min, hi = p->act_max;
    int32_t px = 0;
#if MT_NN_DSP_ASM
    if (kz != NULL && pixels >= 2) { /* the pixel pairs in one asm loop */
        mt_nn_pw_loop L;
        px = pixels & ~1;
        L.wb = wb;
        L.wb_end = wb + n4;
        L.kz = kz;
        L.x_end = x + px * x_stride;
        L.n4 = n4;
        L.x_stride = x_stride;
        L.x_advance = 2 * x_stride - n4;
        L.ys = y_stride;
        L.yc = y_cstride;
        L.y = y;
        mt_nn_pointwise_pairs_asm(x, &L);
    }
#endif
    if (px >= pixels) {
        return;
    }
    /* the rest (an odd last pixel after the asm pairs), or every pixel, in C: the fast-store constants
     * (into the caller's f[2]) */
    mt_nn_pw_pair_store(e, 0, z, &f[0]);
    mt_nn_pw_pair_store(e, 1, z, &f[1]);
    const int32_t b0 = f[0].bias2, m0 = f[0].multiplier, r0 = f[0].round, s0 = f[0].right;
    const int32_t b1 = f[1].bias2, m1 = f[1].multiplier, r1 = f[1].round, s1 = f[1].right;
    for (; px < pixels; px += 2) {
        const int8_t *x0 = x + px * x_stride;
        const int8_t *x1 = px + 1 < pixels ? x0 + x_stride : x0; /* an odd last pixel: computed twice, stored once */
        int8_t *y0 = y + px * y_stride;
        int32_t acc[4] = {0, 0, 0, 0};
#if MT_NN_DSP_ASM
        if (n4 > 0) {
            mt_nn_dot2x2_ext_s8(x0, x1, wb, n4, acc);
            if (kz != NULL) { /* doubled weights: even sums, halved exactly */
                acc[0] >>= 1;
                acc[1] >>= 1;
                acc[2] >>= 1;
                acc[3] >>= 1;
            }
        }
#else
        (void)wb;
#endif
        if (n4 < n) {
            mt_nn_dot2x2_s8(x0, x1, w0, w1, n4, n, acc);
        }
        (void)kz;
        y0[0] = mt_nn_fast_out(acc[0], b0, m0, r0, s0, z, lo, hi, full);
        y0[y_cstride] = mt_nn_fast_out(acc[1], b1, m1, r1, s1, z, lo, hi, full);
        if (x1 != x0) {
            y0[y_stride] = mt_nn_fast_out(acc[2], b0, m0, r0, s0, z, lo, hi, full);
            y0[y_stride + y_cstride] = mt_nn_fast_out(acc[3], b1, m1, r1, s1, z, lo, hi, full);
        }
    }
}

#if MT_NN_DSP_ASM
/* The asm dot product called out of line (its 13 registers do not fit inline in the loops below). */
static MT_NN_NOINLINE void mt_nn_dot2x2_ext_call(const int8_t *x0, const int8_t *x1, const int32_t *wb, int32_t n4,
                                                 int32_t acc[4])
{
    mt_nn_dot2x2_ext_s8(x0, x1, wb, n4, acc);
}

/* The outputs of channel pair (c, c + 1) as mt_nn_pointwise_pair_fast_s8 gives them, for rows too
 * long for wbuf (n4 = n rounded down to 4 > wbuf_words, wbuf_words >= 16): the rows are extended
 * cap = (wbuf_words / 2) rounded down to 4 inputs at a time into the first cap words of wbuf, the
 * rest of wbuf holds the 2x2 sums of up to (wbuf_words - cap) / 4 pixel pairs, carried from chunk
 * to chunk (mt_nn_dot2x2_ext_s8: 16 MACs in 15 instructions, where extending on the fly costs 25);
 * the last n % 4 inputs in C. Raw int8 sums (integer: any order), the fast store. */
static MT_NN_NOINLINE void mt_nn_pointwise_pair_chunked_s8(const int8_t *x, int32_t x_stride, int32_t pixels,
                                                           const int8_t *w0, const int8_t *w1, int32_t n,
                                                           const mt_nn_fast_store *f0, const mt_nn_fast_store *f1,
                                                           const mt_conv_params *p, int8_t *y, int32_t y_stride,
                                                           int32_t y_cstride, int32_t *wbuf, int32_t wbuf_words)
{
    const int32_t cap = (wbuf_words / 2) & ~3, n4 = n & ~3, group = 2 * ((wbuf_words - cap) / 4);
    const int32_t z = p->output_zero_point, lo = p->act_min, hi = p->act_max;
    int32_t *acc = wbuf + cap;
    int32_t p0, i0, k;
    for (p0 = 0; p0 < pixels; p0 += group) { /* pixel groups whose sums fit the rest of wbuf */
        const int32_t np = pixels - p0 < group ? pixels - p0 : group, pairs = (np + 1) / 2;
        for (k = 0; k < 4 * pairs; ++k) {
            acc[k] = 0;
        }
        for (i0 = 0; i0 < n4; i0 += cap) {
            const int32_t len = n4 - i0 < cap ? n4 - i0 : cap;
            mt_nn_extend2_s8(w0 + i0, w1 + i0, len, wbuf, 0);
            for (k = 0; k < pairs; ++k) {
                const int8_t *xa = x + (p0 + 2 * k) * x_stride;
                const int8_t *xb = 2 * k + 1 < np ? xa + x_stride : xa; /* an odd last pixel: twice */
                mt_nn_dot2x2_ext_call(xa + i0, xb + i0, wbuf, len, acc + 4 * k);
            }
        }
        for (k = 0; k < pairs; ++k) {
            const int8_t *xa = x + (p0 + 2 * k) * x_stride;
            const int8_t *xb = 2 * k + 1 < np ? xa + x_stride : xa;
            int8_t *yo = y + (p0 + 2 * k) * y_stride;
            int32_t *a = acc + 4 * k;
            for (i0 = n4; i0 < n; ++i0) { /* the last n % 4 inputs */
                a[0] += (int32_t)xa[i0] * w0[i0];
                a[1] += (int32_t)xa[i0] * w1[i0];
                a[2] += (int32_t)xb[i0] * w0[i0];
                a[3] += (int32_t)xb[i0] * w1[i0];
            }
            yo[0] = mt_nn_fast_out(a[0], f0->bias2, f0->multiplier, f0->round, f0->right, z, lo, hi, 0);
            yo[y_cstride] = mt_nn_fast_out(a[1], f1->bias2, f1->multiplier, f1->round, f1->right, z, lo, hi, 0);
            if (xb != xa) {
                yo[y_stride] = mt_nn_fast_out(a[2], f0->bias2, f0->multiplier, f0->round, f0->right, z, lo, hi, 0);
                yo[y_stride + y_cstride] =
                    mt_nn_fast_out(a[3], f1->bias2, f1->multiplier, f1->round, f1->right, z, lo, hi, 0);
            }
        }
    }
}
#endif

/* A 1x1 conv (p: in_c inputs, out_c outputs, zero points, act range) over `pixels` pixels:
 * y[px * y_stride + c * y_cstride] from x[px * x_stride + i] and weight row c (rows[c] when rows
 * is not NULL, else w + c * in_c), bias (may be NULL) and q. NHWC output: y_cstride 1; a
 * channel-planar row (the fused block's ring): y_stride 1, y_cstride the plane row. wbuf: room for
 * the pre-extended rows of a channel pair (wbuf_words >= in_c rounded down to 4 for them to be used;
 * 4-byte aligned). Padded x rows (x_stride >= in_c rounded up to 4 > in_c: the bytes between are
 * readable, any value) let the extended rows cover in_c rounded up, with zero weights past in_c. The caller has checked p, q and the accumulator bound (in_c <= MT_NN_MAX_DOT_LENGTH).
 * Channel pairs whose constants allow it take the fast store, the others (and an odd last channel)
 * the reference store. */
#if MT_NN_VEC
#include "mt_nn_pw_vec.h"
#endif

static MT_NN_NOINLINE void mt_nn_pointwise_fast_s8(const mt_conv_params *p, const mt_per_channel_quant *q,
                                                   const int8_t *x, int32_t x_stride, int32_t pixels, const int8_t *w,
                                                   const int8_t *const *rows, const int32_t *bias, int8_t *y,
                                                   int32_t y_stride, int32_t y_cstride, int32_t *wbuf,
                                                   int32_t wbuf_words)
{
    const int32_t n = p->in_c, out_c = p->out_c, z = p->input_zero_point;
    const int full = p->act_min == -128 && p->act_max == 127;
    const int32_t ne = x_stride > n && x_stride >= ((n + 3) & ~3) ? (n + 3) & ~3 : n & ~3;
    const mt_nn_store s = mt_nn_store_of(bias, q, p);
    const int32_t *pk = mt_nn_pw_pack_of(q->pack, n); /* the compile-time set-up, or NULL */
    /* the pack's pre-extended rows (MT_NN_PACK_PWX / _PWR: ne4 words per pair), usable where the x rows
     * cover ne4 */
    const int32_t ne4 = (n + 3) & ~3;
    const int xok = MT_NN_DSP_ASM && full && ne == ne4 && q->pack != NULL && q->pack[1] == n;
    const int32_t *xrows = xok && q->pack[0] == MT_NN_PACK_PWX   ? pk + (out_c >> 1) * MT_NN_PACK_PW_WORDS
                           : xok && q->pack[0] == MT_NN_PACK_PWR ? q->pack + 2
                                                                 : NULL;
    /* whether the asm pairs with the folded store apply (where a pair's constants allow it) */
    const int fold = MT_NN_DSP_ASM && full && ne >= n && ne > 0 &&
                     ((wbuf != NULL && ne <= wbuf_words) || xrows != NULL);
    int32_t oc, px;
#if MT_NN_VEC
    if (mt_nn_vec_pointwise_s8(p, q, x, x_stride, pixels, w, rows, bias, y, y_stride, y_cstride)) {
        return;
    }
#endif
    for (oc = 0; oc < out_c; oc += 2) {
        const int8_t *w0 = rows != NULL ? rows[oc] : w + oc * n;
        if (oc + 1 < out_c) {
            const int8_t *w1 = rows != NULL ? rows[oc + 1] : w0 + n;
            int32_t own[MT_NN_PACK_PW_WORDS];
            const int32_t *e = pk != NULL ? pk + (oc >> 1) * MT_NN_PACK_PW_WORDS : own;
            if (pk == NULL) {
                mt_nn_pw_pair_words(&s, w0, w1, n, oc, z, fold, own);
            }
            if (e[0] != 0) {
                mt_nn_fast_store f[2];
                const int32_t *wb = NULL;
                /* the asm pairs (doubled weights, MT_NN_STORE_U8) where the constants allow the folded store */
                const int zf = fold && e[0] == 2;
#if MT_NN_DSP_ASM
                if (xrows != NULL && e[0] == 2) { /* on the pack's extended rows in flash */
                    mt_nn_pointwise_pair_fast_s8(x, x_stride, pixels, w0, w1, xrows + (oc >> 1) * ne4, n, e, f, p,
                                                 y + oc * y_cstride, y_stride, y_cstride, 1, e + 3, ne4);
                    continue;
                }
                if (wbuf != NULL && (n & ~3) > wbuf_words && wbuf_words >= 16) {
                    mt_nn_pw_pair_store(e, 0, p->output_zero_point, &f[0]);
                    mt_nn_pw_pair_store(e, 1, p->output_zero_point, &f[1]);
                    mt_nn_pointwise_pair_chunked_s8(x, x_stride, pixels, w0, w1, n, &f[0], &f[1], p, y + oc * y_cstride,
                                                    y_stride, y_cstride, wbuf, wbuf_words);
                    continue;
                }
                if (wbuf != NULL && ne <= wbuf_words) {
                    mt_nn_extend2_pad_s8(w0, w1, n, ne, wbuf, zf);
                    wb = wbuf;
                }
#endif
                if (full) { /* kz: {bias2 c, bias2 c + 1, then multiplier, rz, right of c, of c + 1} */
                    mt_nn_pointwise_pair_fast_s8(x, x_stride, pixels, w0, w1, wb, n, e, f, p, y + oc * y_cstride,
                                                 y_stride, y_cstride, 1, zf ? e + 3 : NULL, ne);
                } else {
                    mt_nn_pointwise_pair_fast_s8(x, x_stride, pixels, w0, w1, wb, n, e, f, p, y + oc * y_cstride,
                                                 y_stride, y_cstride, 0, NULL, ne);
                }
                continue;
            }
            for (px = 0; px < pixels; ++px) { /* the reference store for this pair */
                int32_t acc[2] = {0, 0};
                mt_nn_dot2_s8(x + px * x_stride, w0, w1, n, z, acc);
                y[px * y_stride + oc * y_cstride] = mt_nn_store_s8(acc[0], &s, oc);
                y[px * y_stride + (oc + 1) * y_cstride] = mt_nn_store_s8(acc[1], &s, oc + 1);
            }
        } else {
            for (px = 0; px < pixels; ++px) {
                y[px * y_stride + oc * y_cstride] = mt_nn_store_s8(mt_nn_dot_s8(x + px * x_stride, w0, n, z), &s, oc);
            }
        }
    }
    (void)wbuf;
    (void)wbuf_words;
    (void)xrows;
}

/* ---------------------------------------------------------------------------------------- */
/* ADD                                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* requantize(x, M, shift) for shift <= 0 and |x| < 2^30 (nothing saturates; right may be 0). */
typedef struct {
    int32_t multiplier, round, right, negmask;
} mt_nn_fast_rq;

static inline int mt_nn_fast_rq_of(int32_t multiplier, int32_t shift, mt_nn_fast_rq *r)
{
    if (shift > 0 || shift < -31 || multiplier < 0) {
        return 0;
    }
    r->multiplier = multiplier;
    r->right = -shift;
    r->round = shift < 0 ? (int32_t)1 << (-shift - 1) : 0;
    r->negmask = shift < 0 ? -1 : 0;
    return 1;
}

static MT_NN_INLINE int32_t mt_nn_fast_rq_apply(int32_t x, int32_t multiplier, int32_t round, int32_t right,
                                         int32_t negmask)
{
    const int32_t h = mt_nn_smmulr(x * 2, multiplier);
    return (h + round + ((h >> 31) & negmask)) >> right;
}

/* y[i] = ADD(a[i], b[i]) (mt_add_s8's arithmetic) for i < n with the fast requantization, when
 * p qualifies: left_shift <= 20 (|(x - z) 2^left_shift| < 2^28, so each rescaled term is below
 * 2^28 and their sum below 2^30: the reference's saturating add never saturates) and every shift
 * <= 0. Returns 0 (nothing written) when p does not qualify. y may alias a or b. */
static inline int mt_nn_add_fast_s8(const mt_add_params *p, const int8_t *a, const int8_t *b, int8_t *y, int32_t n)
{
    mt_nn_fast_rq ra, rb, ro;
    int32_t i;
    if (p->left_shift < 0 || p->left_shift > 20 || !mt_nn_fast_rq_of(p->a_multiplier, p->a_shift, &ra) ||
        !mt_nn_fast_rq_of(p->b_multiplier, p->b_shift, &rb) ||
        !mt_nn_fast_rq_of(p->output_multiplier, p->output_shift, &ro)) {
        return 0;
    }
    {
        const int32_t ls = p->left_shift, za = p->a_zero_point, zb = p->b_zero_point, zo = p->output_zero_point;
        const int32_t lo = p->act_min, hi = p->act_max;
        for (i = 0; i < n; ++i) {
            const int32_t sa = ((int32_t)a[i] - za) * ((int32_t)1 << ls);
            const int32_t sb = ((int32_t)b[i] - zb) * ((int32_t)1 << ls);
            const int32_t total = mt_nn_fast_rq_apply(sa, ra.multiplier, ra.round, ra.right, ra.negmask) +
                                  mt_nn_fast_rq_apply(sb, rb.multiplier, rb.round, rb.right, rb.negmask);
            y[i] = mt_nn_fast_clamp(mt_nn_fast_rq_apply(total, ro.multiplier, ro.round, ro.right, ro.negmask), zo,
                                    lo, hi, 0);
        }
    }
    return 1;
}

#endif /* MT_NN_FAST_H */
