/*
 * mt_nn_dw.h: the fast depthwise paths of the runtime (internal, static inline), bit-exact with
 * the reference loop (mt_nn_dw_row_s8 + mt_nn_store_s8): integer sums are exact, padded taps
 * add (z - z) * w = 0 whether skipped or read as z, and the fast store (mt_nn_fast.h) gives the
 * reference's integers wherever a channel's constants qualify.
 *
 * Two layouts. NHWC (a tensor in the arena): four channels at a time, one word load per tap,
 * SMLABB/SMLATT per channel (mt_nn_dw_row_fast_s8). Channel-planar "plane rows" (the fused
 * block's ring, or a channel gathered by the standalone kernel): the window of one channel is
 * contiguous, so a word of x holds four columns and SMLAD sums two taps per instruction; a 3x3
 * window with stride 1 gets two outputs from each word (mt_nn_dw_plane_row_s8).
 */
#ifndef MT_NN_DW_H
#define MT_NN_DW_H

#include "mt_nn_fast.h"

/* ---------------------------------------------------------------------------------------- */
/* Depthwise convolution, NHWC input                                                        */
/* ---------------------------------------------------------------------------------------- */

/* Largest kernel window (kernel_h * kernel_w) of the fast depthwise path (7x7). */
#define MT_NN_DW_TAPS_MAX 49

#if MT_NN_VEC
#include "mt_nn_dw_vec.h"
#endif

#if MT_NN_DSP
/* a[k] += (x - z) * w over n consecutive taps of four channels: x at the first tap's channel c,
 * the next tap C bytes on; w the packed weights (two words per tap: (c, c+2) and (c+1, c+3) as
 * int16 lanes); lanes = -z in both lanes. Up to 7 taps written out. */
#define MT_NN_DW4_TAP                                                                                             \
    do {                                                                                                          \
        const uint32_t v = mt_nn_load4(x);                                                                        \
        const int32_t e02 = __sxtab16(lanes, (int32_t)v), e13 = mt_nn_sxtab16_ror8(lanes, v);                     \
        a0 = __smlabb(e02, w[0], a0);                                                                             \
        a2 = __smlatt(e02, w[0], a2);                                                                             \
        a1 = __smlabb(e13, w[1], a1);                                                                             \
        a3 = __smlatt(e13, w[1], a3);                                                                             \
        x += C;                                                                                                   \
        w += 2;                                                                                                   \
    } while (0)

static MT_NN_INLINE void mt_nn_dw4_taps(const int8_t *x, int32_t C, const int32_t *w, int32_t n, int32_t lanes,
                                 int32_t a[4])
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    for (; n > 7; --n) {
        MT_NN_DW4_TAP;
    }
    switch (n) { /* the remaining 0-7 taps, falling through */
    case 7:
        MT_NN_DW4_TAP; /* fall through */
    case 6:
        MT_NN_DW4_TAP; /* fall through */
    case 5:
        MT_NN_DW4_TAP; /* fall through */
    case 4:
        MT_NN_DW4_TAP; /* fall through */
    case 3:
        MT_NN_DW4_TAP; /* fall through */
    case 2:
        MT_NN_DW4_TAP; /* fall through */
    case 1:
        MT_NN_DW4_TAP; /* fall through */
    default:
        break;
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}
#endif

#if MT_NN_DSP
/* a[k] += (x - z) * w over `rows` >= 1 window rows of n >= 1 taps each of four NHWC channels: row r's
 * first tap at x + r * xs, its packed weights (as mt_nn_dw4_taps) at w + r * ws words. With the asm
 * (n <= 7: the window row written out, per tap one LDR, one LDRD of the tap's two weight words, two
 * SXTAB16 and four SMLABB / SMLATT, 9 instructions for 4 MACs; the rows looped in the asm, 7 more per
 * row), else mt_nn_dw4_taps. 13 registers. */
#if MT_NN_DSP_ASM
#define MT_NN_DW4C_TAP                                                                                            \
    "ldr %[v], [%[x]]\n\t"                                                                                        \
    "add %[x], %[x], %[C]\n\t"                                                                                    \
    "ldrd %[W0], %[W1], [%[w]], #8\n\t"                                                                          \
    "sxtab16 %[e], %[z], %[v]\n\t"                                                                                \
    "sxtab16 %[v], %[z], %[v], ror #8\n\t"                                                                        \
    "smlabb %[a0], %[e], %[W0], %[a0]\n\t"                                                                        \
    "smlatt %[a2], %[e], %[W0], %[a2]\n\t"                                                                        \
    "smlabb %[a1], %[v], %[W1], %[a1]\n\t"                                                                        \
    "smlatt %[a3], %[v], %[W1], %[a3]\n\t"
/* the rows: after a row's taps, x and w step on by sk[0] and sk[1] bytes to the next row's first tap,
 * until w reaches sk[2] */
#define MT_NN_DW4C_ROWS(taps)                                                                                     \
    __asm__ volatile("1:\n\t" taps "ldr %[v], [%[sk]]\n\t"                                                       \
                     "add %[x], %[x], %[v]\n\t"                                                                   \
                     "ldr %[v], [%[sk], #4]\n\t"                                                                  \
                     "add %[w], %[w], %[v]\n\t"                                                                   \
                     "ldr %[v], [%[sk], #8]\n\t"                                                                  \
                     "cmp %[w], %[v]\n\t"                                                                         \
                     "bne 1b\n\t"                                                                                 \
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x0), [w] "+r"(w0),      \
                       [v] "=&r"(v), [e] "=&r"(e), [W0] "=&r"(W0), [W1] "=&r"(W1)                                 \
                     : [C] "r"(C), [z] "r"(lanes), [sk] "r"(sk)                                                   \
                     : "cc", "memory");                                                                           \
    break
#endif
static MT_NN_INLINE void mt_nn_dw4c_rows(const int8_t *x0, int32_t xs, const int32_t *w0, int32_t ws, int32_t rows,
                                  int32_t n, int32_t C, int32_t lanes, int32_t a[4])
{
#if MT_NN_DSP_ASM
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], v, e, W0, W1;
    /* bytes from the tap after a row's last one to the next row's first, and w past the last row */
    const int32_t sk[3] = {xs - n * C, 4 * (ws - 2 * n), (int32_t)(intptr_t)(w0 + rows * ws)};
    switch (n) {
    case 1:
        MT_NN_DW4C_ROWS(MT_NN_DW4C_TAP);
    case 2:
        MT_NN_DW4C_ROWS(MT_NN_DW4C_TAP MT_NN_DW4C_TAP);
    case 3:
        MT_NN_DW4C_ROWS(MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP);
    case 4:
        MT_NN_DW4C_ROWS(MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP);
    case 5:
        MT_NN_DW4C_ROWS(MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP);
    case 6:
        MT_NN_DW4C_ROWS(MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP);
    case 7:
        MT_NN_DW4C_ROWS(MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP MT_NN_DW4C_TAP
                            MT_NN_DW4C_TAP);
    default:
        for (; rows > 0; --rows, x0 += xs, w0 += ws) {
            int32_t t[4] = {a0, a1, a2, a3};
            mt_nn_dw4_taps(x0, C, w0, n, lanes, t);
            a0 = t[0];
            a1 = t[1];
            a2 = t[2];
            a3 = t[3];
        }
        break;
    }
    (void)v;
    (void)e;
    (void)W0;
    (void)W1;
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
#else
    for (; rows > 0; --rows, x0 += xs, w0 += ws) {
        mt_nn_dw4_taps(x0, C, w0, n, lanes, a);
    }
#endif
}
#endif

/* One output row of a depthwise conv d (every channel): input row ky of the window at src_row[ky]
 * for ky in [ky_begin, ky_end) (the rows inside the input), y = the output row. On DSP cores the
 * channels go four at a time: their weights are packed once per group as int16 lanes, (c, c+2)
 * and (c+1, c+3) per tap, and each tap inside the input costs one word load of the four
 * channels, two SXTAB16 (x - z in int16 lanes, the same lane order) and four SMLABB/SMLATT;
 * taps in the padding are skipped (they add (z - z) * w = 0), as in the reference. Groups whose
 * fast-store constants do not qualify, leftover channels, and builds without DSP take the
 * reference loop. */
static MT_NN_NOINLINE void mt_nn_dw_row_fast_s8(const mt_conv_params *d, const mt_nn_store *s, const int8_t *const *src_row,
                                        int32_t ky_begin, int32_t ky_end, const int8_t *weights, int8_t *y)
{
    const int32_t C = d->in_c, K = d->kernel_h * d->kernel_w, kw = d->kernel_w, z = d->input_zero_point;
    int32_t c0 = 0, ox, ky;
#if MT_NN_VEC
    c0 = mt_nn_vec_dw_row_s8(d, s, src_row, ky_begin, ky_end, weights, y);
#endif
#if MT_NN_DSP
    if (K <= MT_NN_DW_TAPS_MAX) {
        const int32_t lanes = mt_nn_lane_offset(z);
        const int64_t bound = (int64_t)K * 32640;
        const int32_t zo = d->output_zero_point, lo = d->act_min, hi = d->act_max;
        const int full = lo == -128 && hi == 127;
        int32_t wp[2 * MT_NN_DW_TAPS_MAX];
        int32_t t, k;
        for (; c0 + 4 <= C; c0 += 4) {
            const int8_t *w0 = weights + c0 * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
            mt_nn_fast_store f[4];
            int ok = 1;
            for (k = 0; k < 4; ++k) {
                ok &= mt_nn_fast_store_of(s->bias != NULL ? s->bias[c0 + k] : 0, 0, s->multiplier[c0 + k],
                                          s->shift[c0 + k], bound, bound, &f[k]);
            }
            if (!ok) {
                break; /* this group and the rest: the reference loop */
            }
            for (t = 0; t < K; ++t) {
                wp[2 * t] = (int32_t)((uint32_t)(uint16_t)(int16_t)w0[t] | ((uint32_t)(uint16_t)(int16_t)w2[t] << 16));
                wp[2 * t + 1] = (int32_t)((uint32_t)(uint16_t)(int16_t)w1[t] | ((uint32_t)(uint16_t)(int16_t)w3[t] << 16));
            }
            for (ox = 0; ox < d->out_w; ++ox) {
                const int32_t x0 = ox * d->stride_w - d->pad_left;
                const int32_t kx_begin = x0 < 0 ? -x0 : 0;
                const int32_t kx_end = d->in_w - x0 < kw ? d->in_w - x0 : kw;
                const int32_t taps = kx_end - kx_begin;
                int32_t a[4] = {0, 0, 0, 0};
                int8_t *yo = y + ox * C + c0;
                for (ky = ky_begin; ky < ky_end; ++ky) {
                    mt_nn_dw4_taps(src_row[ky] + (x0 + kx_begin) * C + c0, C, wp + 2 * (ky * kw + kx_begin), taps,
                                   lanes, a);
                }
                if (full) {
                    for (k = 0; k < 4; ++k) {
                        yo[k] = mt_nn_fast_out(a[k], f[k].bias2, f[k].multiplier, f[k].round, f[k].right, zo, lo, hi, 1);
                    }
                } else {
                    for (k = 0; k < 4; ++k) {
                        yo[k] = mt_nn_fast_out(a[k], f[k].bias2, f[k].multiplier, f[k].round, f[k].right, zo, lo, hi, 0);
                    }
                }
            }
        }
    }
#endif
    /* the reference loop: the channels from c0 on */
    for (ox = 0; c0 < C && ox < d->out_w; ++ox) {
        const int32_t x0 = ox * d->stride_w - d->pad_left;
        const int32_t kx_begin = x0 < 0 ? -x0 : 0;
        const int32_t kx_end = d->in_w - x0 < kw ? d->in_w - x0 : kw;
        int32_t c;
        for (c = c0; c < C; ++c) {
            const int8_t *w = weights + c * K;
            int32_t acc = 0;
            for (ky = ky_begin; ky < ky_end; ++ky) {
                acc += mt_nn_dw_row_s8(src_row[ky] + (x0 + kx_begin) * C + c, C, w + ky * kw + kx_begin,
                                       kx_end - kx_begin, z);
            }
            y[ox * C + c] = mt_nn_store_s8(acc, s, c);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Depthwise convolution, channel-planar padded rows                                        */
/* ---------------------------------------------------------------------------------------- */

/* A "plane row" is one channel of one input row, stored contiguously with the zero point in the
 * padding: pad_left bytes of z, in_w values, pad_right bytes of z, and at least 3 readable bytes
 * after it (the 4-byte loads of the last window may read past the row; those lanes are
 * multiplied by zero weights). Output column ox reads plane-row columns [ox * stride_w,
 * ox * stride_w + kernel_w). Padded taps hold z, so (x - z) * w = 0 for them, as the reference's
 * skipping gives; rows in the padding are skipped. */

/* Widest kernel row of the planar path, and its packed weights per channel: per window row,
 * ceil(kernel_w / 4) groups of two words (taps (4j, 4j+2) and (4j+1, 4j+3) as int16 lanes, the
 * lanes SXTB16 / SXTB16 ROR 8 give of a word of x; taps past kernel_w are 0). */
#define MT_NN_DW_PLANE_KW_MAX 8
/* Largest padded channel plane the standalone depthwise kernel gathers on the stack (+ 4 bytes). */
#define MT_NN_DW_PLANE_BYTES 400
#define MT_NN_DW_PLANE_WORDS (MT_NN_IB_MAX_KERNEL * 2 * ((MT_NN_DW_PLANE_KW_MAX + 3) / 4))

/* The set-up of one depthwise channel for the asm rows (3x3 pairs, 5x5 / 7x7 fours), per call or
 * once, at compile time, into the conv's pack (mt_conv_pack_s8), by the same function. Depthwise pack
 * (groups = in_c = out_c, square kernel k in {3, 5, 7}), int32 words (little-endian, the same on
 * every host and target):
 *     {MT_NN_PACK_DW, k}, then per channel MT_NN_DW4_WORDS(k) words
 *     {the packed taps (MT_NN_DW4_TAPW(k) words), bias2, multiplier, rz, right}
 * The taps, doubled, as int16 lanes (low, high) per window row: k = 3: (w0, w2), (w1, 0); k = 5: (w0, w2),
 * (w1, w3), (w4, 0), 0; k = 7: (w0, w2), (w1, w3), (w4, w6), (w5, 0): the lanes SXTB16 / SXTB16 ROR 8
 * give of a word of x (mt_nn_dw3_pairs_asm, mt_nn_dw4_asm read them in place). The store words are
 * mt_nn_zfold_of's with bias2 = 2 (bias - z_x sum w) (the zero point folded: the asm sums raw int8
 * products); right = 0 (never a folded store's: it is >= 1) when the channel's constants do not allow
 * the folded store (the kernel then takes its other paths). */
#define MT_NN_PACK_DW 0x31776470 /* "pdw1" */
#define MT_NN_DW4_TAPW(k) ((k) == 3 ? 6 : 4 * (k))
#define MT_NN_DW4_WORDS(k) (MT_NN_DW4_TAPW(k) + 4)

/* The MT_NN_DW4_WORDS(k) words of channel c (k x k weights w, input zero point z_x, the store s) into e;
 * returns whether the folded store applies (e's right word != 0). */
static inline int32_t mt_nn_dw4_words(const mt_nn_store *s, int32_t c, const int8_t *w, int32_t k, int32_t z_x,
                                      int32_t *e)
{
    const int64_t raw_bound = (int64_t)k * k * 16384, true_bound = (int64_t)k * k * 32640;
    int32_t *t = e, sum = 0, i, ky;
    mt_nn_fast_store g;
    for (i = 0; i < k * k; ++i) {
        sum += w[i];
    }
    for (ky = 0; ky < k; ++ky, w += k) {
        *t++ = mt_nn_pack16(2 * w[0], 2 * w[2]);
        *t++ = mt_nn_pack16(2 * w[1], k == 3 ? 0 : 2 * w[3]);
        if (k == 5) {
            *t++ = mt_nn_pack16(2 * w[4], 0);
            *t++ = 0;
        } else if (k == 7) {
            *t++ = mt_nn_pack16(2 * w[4], 2 * w[6]);
            *t++ = mt_nn_pack16(2 * w[5], 0);
        }
    }
    if ((mt_nn_fast_store_of(s->bias != NULL ? s->bias[c] : 0, (int64_t)z_x * sum, s->multiplier[c], s->shift[c],
                             raw_bound, true_bound, &g) ||
         mt_nn_fast_const_of(s, c, true_bound, s->zero_point, &g)) &&
        mt_nn_zfold_of(&g, s->zero_point, raw_bound, t)) {
        return 1;
    }
    t[0] = t[1] = t[2] = t[3] = 0;
    return 0;
}

/* The words of channel 0 of a depthwise pack for a k x k kernel (NULL: none, or another kind or k). */
static inline const int32_t *mt_nn_dw_pack_of(const int32_t *pack, int32_t k)
{
    return pack != NULL && pack[0] == MT_NN_PACK_DW && pack[1] == k ? pack + 2 : NULL;
}

/* The words of channel c (kernel k x k, weights w) for the asm rows: from the conv's pack, else
 * computed into own (MT_NN_DW4_WORDS(k) words). */
static inline const int32_t *mt_nn_dw4_words_of(const mt_nn_store *s, int32_t c, const int8_t *w, int32_t k,
                                                int32_t z_x, int32_t *own)
{
    const int32_t *pk = mt_nn_dw_pack_of(s->pack, k);
    if (pk != NULL) {
        return pk + c * MT_NN_DW4_WORDS(k);
    }
    mt_nn_dw4_words(s, c, w, k, z_x, own);
    return own;
}

/* Whether the planar path applies to depthwise conv d. */
static inline int mt_nn_dw_plane_ok(const mt_conv_params *d)
{
    return MT_NN_DSP && d->kernel_w <= MT_NN_DW_PLANE_KW_MAX && d->kernel_h <= MT_NN_IB_MAX_KERNEL;
}

static inline void mt_nn_dw_plane_pack(const int8_t *w, int32_t kh, int32_t kw, int32_t *wp)
{
    int32_t ky, j;
    for (ky = 0; ky < kh; ++ky) {
        for (j = 0; j < kw; j += 4) {
            const int8_t *r = w + ky * kw + j;
#if MT_NN_DSP
            /* a group of 4 taps, or of 3 taps followed by the next window row (inside the weights):
             * one word load; SXTB16 gives the lanes, the missing fourth tap's lane is cleared */
            if (j + 4 <= kw || (j + 3 == kw && ky + 1 < kh)) {
                const uint32_t v = mt_nn_load4(r);
                const int32_t odd = mt_nn_sxtb16_ror8(v);
                *wp++ = __sxtb16((int32_t)v);
                *wp++ = j + 4 <= kw ? odd : (int32_t)((uint32_t)odd & 0xFFFFu);
                continue;
            }
#endif
            *wp++ = mt_nn_pack16(r[0], j + 2 < kw ? r[2] : 0);
            *wp++ = mt_nn_pack16(j + 1 < kw ? r[1] : 0, j + 3 < kw ? r[3] : 0);
        }
    }
}

/* Unrolls the window loops of the planar kernels when their bounds are constants (GCC 8+: the
 * -O2 cost model would not unroll them completely). */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define MT_NN_UNROLL _Pragma("GCC unroll 8")
#else
#define MT_NN_UNROLL
#endif

#if MT_NN_DSP
/* sum over one window row of (x - z) * w: x the row's first tap, wp its packed weights, groups = ceil(kw / 4). */
static MT_NN_INLINE int32_t mt_nn_dw_plane_taps(const int8_t *x, const int32_t *wp, int32_t groups, int32_t lanes,
                                         int32_t acc)
{
    int32_t j;
    MT_NN_UNROLL
    for (j = 0; j < groups; ++j) {
        const uint32_t v = mt_nn_load4(x + 4 * j);
        acc = __smlad(__sxtab16(lanes, (int32_t)v), wp[2 * j], acc);
        acc = __smlad(mt_nn_sxtab16_ror8(lanes, v), wp[2 * j + 1], acc);
    }
    return acc;
}

/* One output row of one channel with the fast store: y[ox * y_stride]. kh, kw, sw: the kernel
 * height, width and stride when the caller passes them as constants (the loops are then unrolled;
 * the window's rows all inside: ky_begin = 0, ky_end = kh), or 0 with the runtime ones. */
static MT_NN_INLINE void mt_nn_dw_plane_row_fast_s8(const mt_conv_params *d, const int8_t *const *prow, int32_t ky_begin,
                                             int32_t ky_end, const int32_t *wp, int32_t lanes,
                                             const mt_nn_fast_store *f, int8_t *y, int32_t y_stride, int full,
                                             const int kh, const int kw, const int sw)
{
    const int32_t KW = kw ? kw : d->kernel_w, SW = sw ? sw : d->stride_w, out_w = d->out_w, groups = (KW + 3) / 4;
    const int32_t kb = kh ? 0 : ky_begin, ke = kh ? kh : ky_end;
    const int32_t zo = d->output_zero_point, lo = d->act_min, hi = d->act_max;
    const int32_t b2 = f->bias2, m = f->multiplier, rd = f->round, rt = f->right;
    int32_t ox = 0, ky;
    if (KW == 3 && SW == 1) {
        /* two outputs per word: bytes (0..3) at column ox give taps (0,1,2) of ox and (1,2,3) of ox + 1 */
        for (; ox + 1 < out_w; ox += 2) {
            int32_t a0 = 0, a1 = 0;
            MT_NN_UNROLL
            for (ky = kb; ky < ke; ++ky) {
                const uint32_t v = mt_nn_load4(prow[ky] + ox);
                const int32_t e = __sxtab16(lanes, (int32_t)v), o = mt_nn_sxtab16_ror8(lanes, v);
                const int32_t w02 = wp[2 * ky], w1 = wp[2 * ky + 1];
                a0 = __smlabb(o, w1, __smlad(e, w02, a0));
                a1 = __smlatb(e, w1, __smlad(o, w02, a1));
            }
            y[ox * y_stride] = mt_nn_fast_out(a0, b2, m, rd, rt, zo, lo, hi, full);
            y[(ox + 1) * y_stride] = mt_nn_fast_out(a1, b2, m, rd, rt, zo, lo, hi, full);
        }
    }
    for (; ox < out_w; ++ox) {
        int32_t a = 0;
        MT_NN_UNROLL
        for (ky = kb; ky < ke; ++ky) {
            a = mt_nn_dw_plane_taps(prow[ky] + ox * SW, wp + 2 * groups * ky, groups, lanes, a);
        }
        y[ox * y_stride] = mt_nn_fast_out(a, b2, m, rd, rt, zo, lo, hi, full);
    }
}

/* The fast row with the common shapes as constants (3x3, 5x5, 7x7; stride 1 or 2; every window
 * row inside the input), else the runtime loop. */
static MT_NN_INLINE void mt_nn_dw_plane_row_any_s8(const mt_conv_params *d, const int8_t *const *prow, int32_t ky_begin,
                                            int32_t ky_end, const int32_t *wp, int32_t lanes,
                                            const mt_nn_fast_store *f, int8_t *y, int32_t y_stride, int full)
{
    const int32_t k = d->kernel_w, sw = d->stride_w;
    if (d->kernel_h == k && ky_begin == 0 && ky_end == k && (sw == 1 || sw == 2) && (k == 3 || k == 5 || k == 7)) {
        if (k == 3) {
            if (sw == 1) {
                mt_nn_dw_plane_row_fast_s8(d, prow, 0, 3, wp, lanes, f, y, y_stride, full, 3, 3, 1);
            } else {
                mt_nn_dw_plane_row_fast_s8(d, prow, 0, 3, wp, lanes, f, y, y_stride, full, 3, 3, 2);
            }
        } else if (k == 5) {
            if (sw == 1) {
                mt_nn_dw_plane_row_fast_s8(d, prow, 0, 5, wp, lanes, f, y, y_stride, full, 5, 5, 1);
            } else {
                mt_nn_dw_plane_row_fast_s8(d, prow, 0, 5, wp, lanes, f, y, y_stride, full, 5, 5, 2);
            }
        } else {
            if (sw == 1) {
                mt_nn_dw_plane_row_fast_s8(d, prow, 0, 7, wp, lanes, f, y, y_stride, full, 7, 7, 1);
            } else {
                mt_nn_dw_plane_row_fast_s8(d, prow, 0, 7, wp, lanes, f, y, y_stride, full, 7, 7, 2);
            }
        }
        return;
    }
    mt_nn_dw_plane_row_fast_s8(d, prow, ky_begin, ky_end, wp, lanes, f, y, y_stride, full, 0, 0, 0);
}
#endif

#if MT_NN_DSP_ASM
/* 3x3 depthwise rows in asm, two outputs per iteration, on plane rows p0, p1, p2 (window rows 0-2,
 * every one inside the input): raw int8 sums (the zero point folded into bias2: the padded taps
 * hold z, so sum (x - z) w = sum x w - z * sum w over the whole window) on doubled weights, the
 * accumulators started at bias2, then the folded store (MT_NN_STORE_U8), 13 registers (y, ys and
 * the end in memory). wk: the packed weights of mt_nn_dw4_words (two words per window row:
 * taps (0, 2) and (1, -) as doubled int16 lanes), then {bias2, multiplier, rz, right}. y advances two
 * outputs (2 * ys) per iteration until p0 reaches p0_end. Stride 1: the word at column ox holds
 * taps (0, 1, 2) of output ox and (0, 1, 2) of ox + 1 shifted by one (SMUAD / SMLABB / SMLATB as
 * in mt_nn_dw_plane_row_fast_s8); stride 2: the word at 2 ox and the byte at 2 ox + 4. */
#define MT_NN_DW3S1_ROW(p, off, first)                                                                            \
    "ldr %[v], [%[" p "]], #2\n\t"                                                                              \
    "ldrd r4, r5, [%[wk], #" off "]\n\t"                                                                        \
    "sxtb16 %[o], %[v], ror #8\n\t"                                                                             \
    "sxtb16 %[v], %[v]\n\t" first                                                                              \
    "smlabb %[a0], %[o], r5, %[a0]\n\t"                                                                         \
    "smlatb %[a1], %[v], r5, %[a1]\n\t"
#define MT_NN_DW3S1_FIRST "smlad %[a0], %[v], r4, %[b2]\n\t" "smlad %[a1], %[o], r4, %[b2]\n\t"
#define MT_NN_DW3S1_NEXT "smlad %[a0], %[v], r4, %[a0]\n\t" "smlad %[a1], %[o], r4, %[a1]\n\t"

#define MT_NN_DW3S2_ROW(p, off, first)                                                                            \
    "ldr %[v], [%[" p "]], #4\n\t"                                                                              \
    "ldrsb r6, [%[" p "]]\n\t"                                                                                  \
    "ldrd r4, r5, [%[wk], #" off "]\n\t"                                                                        \
    "sxtb16 %[o], %[v], ror #8\n\t"                                                                             \
    "sxtb16 %[v], %[v]\n\t" first                                                                              \
    "smlabb %[a0], %[o], r5, %[a0]\n\t"                                                                         \
    "smlatb %[a1], %[o], r5, %[a1]\n\t"                                                                         \
    "smlabt %[a1], r6, r4, %[a1]\n\t"
#define MT_NN_DW3S2_FIRST "smlad %[a0], %[v], r4, %[b2]\n\t" "smlatb %[a1], %[v], r4, %[b2]\n\t"
#define MT_NN_DW3S2_NEXT "smlad %[a0], %[v], r4, %[a0]\n\t" "smlatb %[a1], %[v], r4, %[a1]\n\t"

#define MT_NN_DW3_TAIL                                                                                            \
    "ldr r5, [%[wk], #28]\n\t"                                                                                 \
    "ldrd r6, r8, [%[wk], #32]\n\t" MT_NN_STORE_U8("a0") MT_NN_STORE_U8("a1")                                  \
    "ldr %[v], %[y]\n\t"                                                                                        \
    "ldr %[o], %[ys]\n\t"                                                                                       \
    "strb %[a0], [%[v]]\n\t"                                                                                    \
    "strb %[a1], [%[v], %[o]]\n\t"                                                                              \
    "add %[v], %[v], %[o], lsl #1\n\t"                                                                          \
    "str %[v], %[y]\n\t"                                                                                        \
    "ldr %[v], %[end]\n\t"                                                                                      \
    "cmp %[p0], %[v]\n\t"                                                                                       \
    "bne 1b\n\t"

static MT_NN_INLINE void mt_nn_dw3_pairs_asm(const int8_t *p0, const int8_t *p1, const int8_t *p2, const int32_t *wk,
                                      int8_t *y, int32_t ys, const int8_t *end, int stride2)
{
    int32_t a0, a1, v, o;
    if (stride2) {
        __asm__ volatile("1:\n\t" MT_NN_DW3S2_ROW("p0", "0", MT_NN_DW3S2_FIRST) MT_NN_DW3S2_ROW("p1", "8", MT_NN_DW3S2_NEXT)
                             MT_NN_DW3S2_ROW("p2", "16", MT_NN_DW3S2_NEXT) MT_NN_DW3_TAIL
                         : [a0] "=&r"(a0), [a1] "=&r"(a1), [v] "=&r"(v), [o] "=&r"(o), [p0] "+&r"(p0), [p1] "+&r"(p1),
                           [p2] "+&r"(p2), [y] "+m"(y)
                         : [wk] "r"(wk), [b2] "r"(wk[6]), [ys] "m"(ys), [end] "m"(end)
                         : "r4", "r5", "r6", "r8", "cc", "memory");
    } else {
        __asm__ volatile("1:\n\t" MT_NN_DW3S1_ROW("p0", "0", MT_NN_DW3S1_FIRST) MT_NN_DW3S1_ROW("p1", "8", MT_NN_DW3S1_NEXT)
                             MT_NN_DW3S1_ROW("p2", "16", MT_NN_DW3S1_NEXT) MT_NN_DW3_TAIL
                         : [a0] "=&r"(a0), [a1] "=&r"(a1), [v] "=&r"(v), [o] "=&r"(o), [p0] "+&r"(p0), [p1] "+&r"(p1),
                           [p2] "+&r"(p2), [y] "+m"(y)
                         : [wk] "r"(wk), [b2] "r"(wk[6]), [ys] "m"(ys), [end] "m"(end)
                         : "r4", "r5", "r6", "r8", "cc", "memory");
    }
}
#endif

#if MT_NN_DSP_ASM
/* 3x3 depthwise rows in asm, four outputs per iteration, on plane rows p0, p1, p2 (window rows 0-2):
 * the operands of mt_nn_dw3_pairs_asm (wk: per window row (2w0, 2w2), (2w1, 0), then {bias2,
 * multiplier, rz, right}); y advances four outputs (4 ys) per iteration until p0 reaches p0_end.
 * 12 registers: a0-a3, v, o, Wa, Wb, p0-p2, wk (y, ys and the end in memory).
 * Stride 1 (77 instructions for 36 MACs; the pairs take 43 for 18): the words at columns ox and
 * ox + 2 (bytes b0-b3, b2-b5) give out k = P (w0, w2) + b w1 for k = 0..3, P the lane pair
 * (b_k, b_k+2) of SXTB16 / SXTB16 ROR 8 and b = b_k+1 the other lane. Window row 0 starts the
 * accumulators at bias2 (in a0 until a0's own last product).
 * Stride 2 (85 for 36; the pairs 49 for 18): the words at 2 ox (b0-b3) and 2 ox + 4 (b4-b7) and
 * the byte b8: out 0, 2 = P (w0, w2) + b w1 as above, out 1 = b2 w0 + b3 w1 + b4 w2 and out 3 =
 * b6 w0 + b7 w1 + b8 w2 tap by tap. */
#define MT_NN_DW3Q_LD(p, o) "ldr %[v], [%[" p "], #" o "]\n\t" "sxtb16 %[o], %[v], ror #8\n\t" "sxtb16 %[v], %[v]\n\t"
#define MT_NN_DW3Q_LDI(p, o) "ldr %[v], [%[" p "]], #" o "\n\t" "sxtb16 %[o], %[v], ror #8\n\t" "sxtb16 %[v], %[v]\n\t"
#define MT_NN_DW3Q_M(op, a, x, w, acc) op " %[" a "], %[" x "], %[" w "], %[" acc "]\n\t"
#define MT_NN_DW3Q_W(off) "ldrd %[Wa], %[Wb], [%[wk], #" off "]\n\t"
/* stride 1, window row 0 (bias2 in a0) */
#define MT_NN_DW3Q_S1_FIRST                                                                                       \
    "ldr %[a0], [%[wk], #24]\n\t" MT_NN_DW3Q_W("0") "ldr %[v], [%[p0], #2]\n\t"                                 \
    "sxtb16 %[a2], %[v]\n\t"                                                                                      \
    "sxtb16 %[a3], %[v], ror #8\n\t" MT_NN_DW3Q_M("smlabb", "o", "a3", "Wb", "a0")                                \
        MT_NN_DW3Q_M("smlad", "a3", "a3", "Wa", "a0") MT_NN_DW3Q_M("smlatb", "a3", "a2", "Wb", "a3")               \
            MT_NN_DW3Q_M("smlad", "a2", "a2", "Wa", "o") MT_NN_DW3Q_LDI("p0", "4")                               \
                MT_NN_DW3Q_M("smlad", "a1", "o", "Wa", "a0") MT_NN_DW3Q_M("smlatb", "a1", "v", "Wb", "a1")         \
                    MT_NN_DW3Q_M("smlad", "a0", "v", "Wa", "a0") MT_NN_DW3Q_M("smlabb", "a0", "o", "Wb", "a0")
/* stride 1, window rows 1 and 2 */
#define MT_NN_DW3Q_S1_ROW(p, off)                                                                                 \
    MT_NN_DW3Q_W(off) MT_NN_DW3Q_LD(p, "2") MT_NN_DW3Q_M("smlad", "a2", "v", "Wa", "a2")                          \
        MT_NN_DW3Q_M("smlabb", "a2", "o", "Wb", "a2") MT_NN_DW3Q_M("smlad", "a3", "o", "Wa", "a3")                 \
            MT_NN_DW3Q_M("smlatb", "a3", "v", "Wb", "a3") MT_NN_DW3Q_LDI(p, "4")                                  \
                MT_NN_DW3Q_M("smlad", "a0", "v", "Wa", "a0") MT_NN_DW3Q_M("smlabb", "a0", "o", "Wb", "a0")         \
                    MT_NN_DW3Q_M("smlad", "a1", "o", "Wa", "a1") MT_NN_DW3Q_M("smlatb", "a1", "v", "Wb", "a1")
/* stride 2, window row 0 (bias2 in a0) */
#define MT_NN_DW3Q_S2_FIRST                                                                                       \
    "ldr %[a0], [%[wk], #24]\n\t" MT_NN_DW3Q_W("0") MT_NN_DW3Q_LD("p0", "4")                                     \
        MT_NN_DW3Q_M("smlad", "a2", "v", "Wa", "a0") MT_NN_DW3Q_M("smlabb", "a2", "o", "Wb", "a2")                 \
            MT_NN_DW3Q_M("smlatb", "a3", "v", "Wa", "a0") MT_NN_DW3Q_M("smlatb", "a3", "o", "Wb", "a3")            \
                MT_NN_DW3Q_M("smlabt", "a1", "v", "Wa", "a0") "ldrsb %[v], [%[p0], #8]\n\t"                      \
                    MT_NN_DW3Q_M("smlabt", "a3", "v", "Wa", "a3") MT_NN_DW3Q_LDI("p0", "8")                       \
                        MT_NN_DW3Q_M("smlatb", "a1", "v", "Wa", "a1") MT_NN_DW3Q_M("smlatb", "a1", "o", "Wb", "a1") \
                            MT_NN_DW3Q_M("smlad", "a0", "v", "Wa", "a0") MT_NN_DW3Q_M("smlabb", "a0", "o", "Wb", "a0")
/* stride 2, window rows 1 and 2 */
#define MT_NN_DW3Q_S2_ROW(p, off)                                                                                 \
    MT_NN_DW3Q_W(off) MT_NN_DW3Q_LD(p, "4") MT_NN_DW3Q_M("smlad", "a2", "v", "Wa", "a2")                          \
        MT_NN_DW3Q_M("smlabb", "a2", "o", "Wb", "a2") MT_NN_DW3Q_M("smlatb", "a3", "v", "Wa", "a3")                \
            MT_NN_DW3Q_M("smlatb", "a3", "o", "Wb", "a3") MT_NN_DW3Q_M("smlabt", "a1", "v", "Wa", "a1")            \
                "ldrsb %[v], [%[" p "], #8]\n\t" MT_NN_DW3Q_M("smlabt", "a3", "v", "Wa", "a3")                   \
                    MT_NN_DW3Q_LDI(p, "8") MT_NN_DW3Q_M("smlatb", "a1", "v", "Wa", "a1")                          \
                        MT_NN_DW3Q_M("smlatb", "a1", "o", "Wb", "a1") MT_NN_DW3Q_M("smlad", "a0", "v", "Wa", "a0") \
                            MT_NN_DW3Q_M("smlabb", "a0", "o", "Wb", "a0")
#define MT_NN_DW3Q_STORE(a)                                                                                       \
    "smmlar %[o], %[" a "], %[Wa], %[Wb]\n\t"                                                                     \
    "add %[o], %[o], %[" a "], asr #31\n\t"                                                                       \
    "asr %[o], %[o], %[v]\n\t"                                                                                    \
    "ssat %[" a "], #8, %[o]\n\t"
#define MT_NN_DW3Q_TAIL                                                                                           \
    "ldrd %[Wa], %[Wb], [%[wk], #28]\n\t"                                                                        \
    "ldr %[v], [%[wk], #36]\n\t" MT_NN_DW3Q_STORE("a0") MT_NN_DW3Q_STORE("a1") MT_NN_DW3Q_STORE("a2")            \
        MT_NN_DW3Q_STORE("a3") "ldr %[v], %[y]\n\t"                                                              \
    "ldr %[o], %[ys]\n\t"                                                                                         \
    "strb %[a0], [%[v]]\n\t"                                                                                      \
    "strb %[a1], [%[v], %[o]]\n\t"                                                                                \
    "add %[v], %[v], %[o], lsl #1\n\t"                                                                            \
    "strb %[a2], [%[v]]\n\t"                                                                                      \
    "strb %[a3], [%[v], %[o]]\n\t"                                                                                \
    "add %[v], %[v], %[o], lsl #1\n\t"                                                                            \
    "str %[v], %[y]\n\t"                                                                                          \
    "ldr %[o], %[end]\n\t"                                                                                        \
    "cmp %[p0], %[o]\n\t"                                                                                         \
    "bne 1b\n\t"
#define MT_NN_DW3Q_ASM(body)                                                                                      \
    __asm__ volatile("1:\n\t" body MT_NN_DW3Q_TAIL                                                                \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [v] "=&r"(v), [o] "=&r"(o), \
                       [Wa] "=&r"(wa), [Wb] "=&r"(wb), [p0] "+&r"(p0), [p1] "+&r"(p1), [p2] "+&r"(p2), [y] "+m"(y)  \
                     : [wk] "r"(wk), [ys] "m"(ys), [end] "m"(end)                                                 \
                     : "cc", "memory")

/* Outputs [0, 4 n) of one row, n >= 1 (end = p0 + 4 n * stride). */
static MT_NN_INLINE void mt_nn_dw3_quads_asm(const int8_t *p0, const int8_t *p1, const int8_t *p2, const int32_t *wk,
                                      int8_t *y, int32_t ys, const int8_t *end, int stride2)
{
    int32_t a0, a1, a2, a3, v, o, wa, wb;
    if (stride2) {
        MT_NN_DW3Q_ASM(MT_NN_DW3Q_S2_FIRST MT_NN_DW3Q_S2_ROW("p1", "8") MT_NN_DW3Q_S2_ROW("p2", "16"));
    } else {
        MT_NN_DW3Q_ASM(MT_NN_DW3Q_S1_FIRST MT_NN_DW3Q_S1_ROW("p1", "8") MT_NN_DW3Q_S1_ROW("p2", "16"));
    }
    (void)a0; (void)a1; (void)a2; (void)a3; (void)v; (void)o; (void)wa; (void)wb;
}

/* `rows` >= 1 whole rows of out_w = 4 n outputs (end = p0 + 4 n * stride): after a row the window rows
 * step on by row_step bytes and y to the next output row (y_row_stride), in the asm (17 instructions
 * per row; the C row loop around mt_nn_dw3_quads_asm took about 30). */
#define MT_NN_DW3Q_ROWS_TAIL                                                                                      \
    "ldr %[o], %[pskip]\n\t"                                                                                      \
    "add %[p0], %[p0], %[o]\n\t"                                                                                  \
    "add %[p1], %[p1], %[o]\n\t"                                                                                  \
    "add %[p2], %[p2], %[o]\n\t"                                                                                  \
    "ldr %[v], %[y]\n\t"                                                                                          \
    "ldr %[o], %[yskip]\n\t"                                                                                      \
    "add %[v], %[v], %[o]\n\t"                                                                                    \
    "str %[v], %[y]\n\t"                                                                                          \
    "ldr %[v], %[end]\n\t"                                                                                        \
    "ldr %[o], %[rstep]\n\t"                                                                                      \
    "add %[v], %[v], %[o]\n\t"                                                                                    \
    "str %[v], %[end]\n\t"                                                                                        \
    "ldr %[v], %[rows]\n\t"                                                                                       \
    "subs %[v], %[v], #1\n\t"                                                                                     \
    "str %[v], %[rows]\n\t"                                                                                       \
    "bne 1b\n\t"
#define MT_NN_DW3Q_ROWS_ASM(body)                                                                                 \
    __asm__ volatile("1:\n\t" body MT_NN_DW3Q_TAIL MT_NN_DW3Q_ROWS_TAIL                                           \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [v] "=&r"(v), [o] "=&r"(o), \
                       [Wa] "=&r"(wa), [Wb] "=&r"(wb), [p0] "+&r"(p0), [p1] "+&r"(p1), [p2] "+&r"(p2), [y] "+m"(y),  \
                       [end] "+m"(end), [rows] "+m"(rows)                                                         \
                     : [wk] "r"(wk), [ys] "m"(ys), [pskip] "m"(pskip), [yskip] "m"(yskip), [rstep] "m"(row_step)  \
                     : "cc", "memory")
static MT_NN_INLINE void mt_nn_dw3_quad_rows_asm(const int8_t *p0, const int8_t *p1, const int8_t *p2, const int32_t *wk,
                                          int8_t *y, int32_t ys, int32_t out_w, int stride2, int32_t rows,
                                          int32_t row_step, int32_t y_row_stride)
{
    int32_t a0, a1, a2, a3, v, o, wa, wb;
    const int8_t *end = p0 + out_w * (stride2 ? 2 : 1);
    const int32_t pskip = row_step - out_w * (stride2 ? 2 : 1), yskip = y_row_stride - out_w * ys;
    if (stride2) {
        MT_NN_DW3Q_ROWS_ASM(MT_NN_DW3Q_S2_FIRST MT_NN_DW3Q_S2_ROW("p1", "8") MT_NN_DW3Q_S2_ROW("p2", "16"));
    } else {
        MT_NN_DW3Q_ROWS_ASM(MT_NN_DW3Q_S1_FIRST MT_NN_DW3Q_S1_ROW("p1", "8") MT_NN_DW3Q_S1_ROW("p2", "16"));
    }
    (void)a0; (void)a1; (void)a2; (void)a3; (void)v; (void)o; (void)wa; (void)wb;
}
#endif

#if MT_NN_DSP_ASM
/* Square 3x3, 5x5 and 7x7 depthwise rows in asm, four outputs per iteration (stride 1 or 2), on plane
 * rows whose every window row is a plane row (rows outside the input point at a row of the zero
 * point: the padded taps then hold z everywhere). Raw int8 sums with the zero point folded into
 * the bias (sum (x - z) w = sum x w - z * sum w over the whole window), weights doubled in their
 * int16 lanes so that the accumulator, started at bias2 = 2 (bias - z sum w), ends at
 * u = bias2 + 2 raw, the operand of SMMULR in the fast store. The store (MT_NN_DW4_STORE) is
 * MT_NN_STORE_U8 (mt_nn_fast.h: SMMLAR, the rounding correction from the sign of u) on other
 * registers.
 *
 * A word of x at byte o (column ox * stride + o of the window row) sign-extended gives the int16
 * lane pairs Pa = (b_o, b_o+2) (SXTB16) and Pb = (b_o+1, b_o+3) (SXTB16 ROR 8); the packed
 * weights per window row (mt_nn_dw4_words) are (2w0, 2w2), (2w1, 2w3 or 0), and for 5x5/7x7
 * (2w4, 2w6 or 0), (2w5 or 0, 0): SMLAD sums the two products of a lane pair, SMLAxy one.
 * Outputs k = 0..3 of an iteration read bytes b_(stride k) .. b_(stride k + kernel - 1) of the
 * row; the loads read at most 3 bytes past the last window of the row (the plane rows' slack).
 * Registers: a0-a3, Pa, Pb, Wa, Wb, Wc, x, off (ox * stride), tab (the kernel_h row pointers),
 * wk (packed rows, then {bias2, multiplier, rz, right}); y, ys and the end of off in memory. */
#define MT_NN_DW4_X(t) "ldr %[x], [%[tab], #" t "]\n\t" "add %[x], %[x], %[off]\n\t"
#define MT_NN_DW4_LD(o) "ldr %[Pb], [%[x], #" o "]\n\t" "sxtb16 %[Pa], %[Pb]\n\t" "sxtb16 %[Pb], %[Pb], ror #8\n\t"
#define MT_NN_DW4_W(o) "ldrd %[Wa], %[Wb], [%[wk], #" o "]\n\t"
#define MT_NN_DW4_M(op, a, p, w) op " %[" a "], %[" p "], %[" w "], %[" a "]\n\t"

/* stride 1, 3x3: out k = P_k (w0, w2) + b_(k+1) w1 */
#define MT_NN_DW4_S1K3(t, w)                                                                                       \
    MT_NN_DW4_X(t) MT_NN_DW4_W(w) MT_NN_DW4_LD("0") MT_NN_DW4_M("smlad", "a0", "Pa", "Wa")                        \
    MT_NN_DW4_M("smlabb", "a0", "Pb", "Wb") MT_NN_DW4_M("smlad", "a1", "Pb", "Wa")                                 \
    MT_NN_DW4_M("smlatb", "a1", "Pa", "Wb") MT_NN_DW4_LD("2") MT_NN_DW4_M("smlad", "a2", "Pa", "Wa")              \
    MT_NN_DW4_M("smlabb", "a2", "Pb", "Wb") MT_NN_DW4_M("smlad", "a3", "Pb", "Wa")                                 \
    MT_NN_DW4_M("smlatb", "a3", "Pa", "Wb")
/* stride 2, 3x3: words at 0 and 4, the byte at 8 */
#define MT_NN_DW4_S2K3(t, w)                                                                                       \
    MT_NN_DW4_X(t) MT_NN_DW4_W(w) MT_NN_DW4_LD("0") MT_NN_DW4_M("smlad", "a0", "Pa", "Wa")                        \
    MT_NN_DW4_M("smlabb", "a0", "Pb", "Wb") MT_NN_DW4_M("smlatb", "a1", "Pa", "Wa")                                \
    MT_NN_DW4_M("smlatb", "a1", "Pb", "Wb") MT_NN_DW4_LD("4") MT_NN_DW4_M("smlabt", "a1", "Pa", "Wa")             \
    MT_NN_DW4_M("smlad", "a2", "Pa", "Wa") MT_NN_DW4_M("smlabb", "a2", "Pb", "Wb")                                 \
    MT_NN_DW4_M("smlatb", "a3", "Pa", "Wa") MT_NN_DW4_M("smlatb", "a3", "Pb", "Wb")                                \
    "ldrsb %[Pb], [%[x], #8]\n\t" MT_NN_DW4_M("smlabt", "a3", "Pb", "Wa")
/* stride 1, 5x5: out k = P_k (w0, w2) + P_(k+1) (w1, w3) + b_(k+4) w4 */
#define MT_NN_DW4_S1K5(t, w, w8)                                                                                   \
    MT_NN_DW4_X(t) MT_NN_DW4_W(w) MT_NN_DW4_LD("0") MT_NN_DW4_M("smlad", "a0", "Pa", "Wa")                        \
    MT_NN_DW4_M("smlad", "a0", "Pb", "Wb") MT_NN_DW4_M("smlad", "a1", "Pb", "Wa") MT_NN_DW4_LD("2")               \
    MT_NN_DW4_M("smlad", "a1", "Pa", "Wb") MT_NN_DW4_M("smlad", "a2", "Pa", "Wa")                                  \
    MT_NN_DW4_M("smlad", "a2", "Pb", "Wb") MT_NN_DW4_M("smlad", "a3", "Pb", "Wa") MT_NN_DW4_LD("4")               \
    MT_NN_DW4_M("smlad", "a3", "Pa", "Wb") "ldr %[Wc], [%[wk], #" w8 "]\n\t"                                       \
    MT_NN_DW4_M("smlabb", "a0", "Pa", "Wc") MT_NN_DW4_M("smlabb", "a1", "Pb", "Wc")                                \
    MT_NN_DW4_M("smlatb", "a2", "Pa", "Wc") MT_NN_DW4_M("smlatb", "a3", "Pb", "Wc")
/* stride 2, 5x5: words at 0, 4, 8; the odd outputs tap by tap */
#define MT_NN_DW4_S2K5(t, w, w8)                                                                                   \
    MT_NN_DW4_X(t) MT_NN_DW4_W(w) "ldr %[Wc], [%[wk], #" w8 "]\n\t" MT_NN_DW4_LD("0")                             \
    MT_NN_DW4_M("smlad", "a0", "Pa", "Wa") MT_NN_DW4_M("smlad", "a0", "Pb", "Wb")                                  \
    MT_NN_DW4_M("smlatb", "a1", "Pa", "Wa") MT_NN_DW4_M("smlatb", "a1", "Pb", "Wb") MT_NN_DW4_LD("4")             \
    MT_NN_DW4_M("smlabt", "a1", "Pa", "Wa") MT_NN_DW4_M("smlabt", "a1", "Pb", "Wb")                                \
    MT_NN_DW4_M("smlatb", "a1", "Pa", "Wc") MT_NN_DW4_M("smlad", "a2", "Pa", "Wa")                                 \
    MT_NN_DW4_M("smlad", "a2", "Pb", "Wb") MT_NN_DW4_M("smlatb", "a3", "Pa", "Wa")                                 \
    MT_NN_DW4_M("smlatb", "a3", "Pb", "Wb") MT_NN_DW4_M("smlabb", "a0", "Pa", "Wc") MT_NN_DW4_LD("8")             \
    MT_NN_DW4_M("smlabb", "a2", "Pa", "Wc") MT_NN_DW4_M("smlabt", "a3", "Pa", "Wa")                                \
    MT_NN_DW4_M("smlabt", "a3", "Pb", "Wb") MT_NN_DW4_M("smlatb", "a3", "Pa", "Wc")
/* stride 1, 7x7: out k = P_k (w0, w2) + P_(k+1) (w1, w3) + P_(k+4) (w4, w6) + b_(k+5) w5 */
#define MT_NN_DW4_S1K7(t, w, w8)                                                                                   \
    MT_NN_DW4_X(t) MT_NN_DW4_W(w) MT_NN_DW4_LD("0") MT_NN_DW4_M("smlad", "a0", "Pa", "Wa")                        \
    MT_NN_DW4_M("smlad", "a0", "Pb", "Wb") MT_NN_DW4_M("smlad", "a1", "Pb", "Wa") MT_NN_DW4_LD("2")               \
    MT_NN_DW4_M("smlad", "a1", "Pa", "Wb") MT_NN_DW4_M("smlad", "a2", "Pa", "Wa")                                  \
    MT_NN_DW4_M("smlad", "a2", "Pb", "Wb") MT_NN_DW4_M("smlad", "a3", "Pb", "Wa") MT_NN_DW4_LD("4")               \
    MT_NN_DW4_M("smlad", "a3", "Pa", "Wb") MT_NN_DW4_W(w8) MT_NN_DW4_M("smlad", "a0", "Pa", "Wa")                 \
    MT_NN_DW4_M("smlad", "a1", "Pb", "Wa") MT_NN_DW4_M("smlabb", "a0", "Pb", "Wb")                                 \
    MT_NN_DW4_M("smlatb", "a1", "Pa", "Wb") MT_NN_DW4_M("smlatb", "a2", "Pb", "Wb") MT_NN_DW4_LD("6")             \
    MT_NN_DW4_M("smlad", "a2", "Pa", "Wa") MT_NN_DW4_M("smlad", "a3", "Pb", "Wa")                                  \
    MT_NN_DW4_M("smlatb", "a3", "Pa", "Wb")
/* stride 2, 7x7: words at 0, 4, 8 with (w0, w2), (w1, w3); at 8, 4, 12 with (w4, w6), (w5, 0) */
#define MT_NN_DW4_S2K7(t, w, w8)                                                                                   \
    MT_NN_DW4_X(t) MT_NN_DW4_W(w) MT_NN_DW4_LD("0") MT_NN_DW4_M("smlad", "a0", "Pa", "Wa")                        \
    MT_NN_DW4_M("smlad", "a0", "Pb", "Wb") MT_NN_DW4_M("smlatb", "a1", "Pa", "Wa")                                 \
    MT_NN_DW4_M("smlatb", "a1", "Pb", "Wb") MT_NN_DW4_LD("4") MT_NN_DW4_M("smlabt", "a1", "Pa", "Wa")             \
    MT_NN_DW4_M("smlabt", "a1", "Pb", "Wb") MT_NN_DW4_M("smlad", "a2", "Pa", "Wa")                                 \
    MT_NN_DW4_M("smlad", "a2", "Pb", "Wb") MT_NN_DW4_M("smlatb", "a3", "Pa", "Wa")                                 \
    MT_NN_DW4_M("smlatb", "a3", "Pb", "Wb") MT_NN_DW4_LD("8") MT_NN_DW4_M("smlabt", "a3", "Pa", "Wa")             \
    MT_NN_DW4_M("smlabt", "a3", "Pb", "Wb") MT_NN_DW4_W(w8) MT_NN_DW4_M("smlabt", "a1", "Pa", "Wa")               \
    MT_NN_DW4_M("smlad", "a2", "Pa", "Wa") MT_NN_DW4_M("smlabb", "a2", "Pb", "Wb")                                 \
    MT_NN_DW4_M("smlatb", "a3", "Pa", "Wa") MT_NN_DW4_M("smlatb", "a3", "Pb", "Wb") MT_NN_DW4_LD("4")             \
    MT_NN_DW4_M("smlad", "a0", "Pa", "Wa") MT_NN_DW4_M("smlabb", "a0", "Pb", "Wb")                                 \
    MT_NN_DW4_M("smlatb", "a1", "Pa", "Wa") MT_NN_DW4_M("smlatb", "a1", "Pb", "Wb")                                \
    "ldr %[Pb], [%[x], #12]\n\t" "sxtb16 %[Pa], %[Pb]\n\t" MT_NN_DW4_M("smlabt", "a3", "Pa", "Wa")

#define MT_NN_DW4_STORE(a)                                                                                         \
    "smmlar %[Pa], %[" a "], %[Wa], %[Wb]\n\t"                                                                     \
    "add %[Pa], %[Pa], %[" a "], asr #31\n\t"                                                                      \
    "asr %[Pa], %[Pa], %[Wc]\n\t"                                                                                  \
    "ssat %[" a "], #8, %[Pa]\n\t"

/* One iteration's frame: the accumulators start at bias2 (word kc of wk), the rows, the store of the
 * four outputs to y, y + ys, y + 2 ys, y + 3 ys, off += step until it reaches end. */
#define MT_NN_DW4_LOOP(rows, kc, kc4, kc12, step)                                                                 \
    "1:\n\t"                                                                                                      \
    "ldr %[a0], [%[wk], #" kc "]\n\t"                                                                            \
    "mov %[a1], %[a0]\n\t"                                                                                        \
    "mov %[a2], %[a0]\n\t"                                                                                        \
    "mov %[a3], %[a0]\n\t" rows "ldrd %[Wa], %[Wb], [%[wk], #" kc4 "]\n\t"                                       \
    "ldr %[Wc], [%[wk], #" kc12 "]\n\t" MT_NN_DW4_STORE("a0") MT_NN_DW4_STORE("a1") MT_NN_DW4_STORE("a2")       \
        MT_NN_DW4_STORE("a3") "ldr %[x], %[y]\n\t"                                                               \
    "ldr %[Pb], %[ys]\n\t"                                                                                        \
    "strb %[a0], [%[x]]\n\t"                                                                                      \
    "strb %[a1], [%[x], %[Pb]]\n\t"                                                                               \
    "add %[x], %[x], %[Pb], lsl #1\n\t"                                                                           \
    "strb %[a2], [%[x]]\n\t"                                                                                      \
    "strb %[a3], [%[x], %[Pb]]\n\t"                                                                               \
    "add %[x], %[x], %[Pb], lsl #1\n\t"                                                                           \
    "str %[x], %[y]\n\t"                                                                                          \
    "add %[off], %[off], #" step "\n\t"                                                                           \
    "ldr %[Pb], %[end]\n\t"                                                                                       \
    "cmp %[off], %[Pb]\n\t"                                                                                       \
    "bne 1b\n\t"

#define MT_NN_DW4_ASM(body)                                                                                       \
    __asm__ volatile(body                                                                                         \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [Pa] "=&r"(pa),            \
                       [Pb] "=&r"(pb), [Wa] "=&r"(wa), [Wb] "=&r"(wb), [Wc] "=&r"(wc), [x] "=&r"(xr),             \
                       [off] "+&r"(off), [y] "+m"(y)                                                              \
                     : [tab] "r"(tab), [wk] "r"(wk), [ys] "m"(ys), [end] "m"(end)                                 \
                     : "cc", "memory")

/* Outputs [0, end / stride) of one row (end a positive multiple of 4 * stride), k in {3, 5, 7}. */
static MT_NN_INLINE void mt_nn_dw4_asm(const int8_t *const *tab, const int32_t *wk, int8_t *y, int32_t ys,
                                         int32_t end, int32_t k, int32_t stride)
{
    int32_t a0, a1, a2, a3, pa, pb, wa, wb, wc, off = 0;
    const int8_t *xr;
    if (k == 3 && stride == 1) {
        MT_NN_DW4_ASM(MT_NN_DW4_LOOP(MT_NN_DW4_S1K3("0", "0") MT_NN_DW4_S1K3("4", "8") MT_NN_DW4_S1K3("8", "16"),
                                     "24", "28", "36", "4"));
    } else if (k == 3) {
        MT_NN_DW4_ASM(MT_NN_DW4_LOOP(MT_NN_DW4_S2K3("0", "0") MT_NN_DW4_S2K3("4", "8") MT_NN_DW4_S2K3("8", "16"),
                                     "24", "28", "36", "8"));
    } else if (k == 5 && stride == 1) {
        MT_NN_DW4_ASM(MT_NN_DW4_LOOP(MT_NN_DW4_S1K5("0", "0", "8") MT_NN_DW4_S1K5("4", "16", "24")
                                         MT_NN_DW4_S1K5("8", "32", "40") MT_NN_DW4_S1K5("12", "48", "56")
                                             MT_NN_DW4_S1K5("16", "64", "72"),
                                     "80", "84", "92", "4"));
    } else if (k == 5) {
        MT_NN_DW4_ASM(MT_NN_DW4_LOOP(MT_NN_DW4_S2K5("0", "0", "8") MT_NN_DW4_S2K5("4", "16", "24")
                                         MT_NN_DW4_S2K5("8", "32", "40") MT_NN_DW4_S2K5("12", "48", "56")
                                             MT_NN_DW4_S2K5("16", "64", "72"),
                                     "80", "84", "92", "8"));
    } else if (stride == 1) {
        MT_NN_DW4_ASM(MT_NN_DW4_LOOP(MT_NN_DW4_S1K7("0", "0", "8") MT_NN_DW4_S1K7("4", "16", "24")
                                         MT_NN_DW4_S1K7("8", "32", "40") MT_NN_DW4_S1K7("12", "48", "56")
                                             MT_NN_DW4_S1K7("16", "64", "72") MT_NN_DW4_S1K7("20", "80", "88")
                                                 MT_NN_DW4_S1K7("24", "96", "104"),
                                     "112", "116", "124", "4"));
    } else {
        MT_NN_DW4_ASM(MT_NN_DW4_LOOP(MT_NN_DW4_S2K7("0", "0", "8") MT_NN_DW4_S2K7("4", "16", "24")
                                         MT_NN_DW4_S2K7("8", "32", "40") MT_NN_DW4_S2K7("12", "48", "56")
                                             MT_NN_DW4_S2K7("16", "64", "72") MT_NN_DW4_S2K7("20", "80", "88")
                                                 MT_NN_DW4_S2K7("24", "96", "104"),
                                     "112", "116", "124", "8"));
    }
    (void)a0; (void)a1; (void)a2; (void)a3; (void)pa; (void)pb; (void)wa; (void)wb; (void)wc; (void)xr;
}

/* Largest zero-point row of the four-output path (the window rows outside the input). */
#define MT_NN_DW4_ZROW 96

/* Whether mt_nn_dw4_rows_s8 takes depthwise conv d (5x5 or 7x7: the 3x3 rows keep the asm pairs,
 * as fast and cheaper to set up) with window rows [ky_begin, ky_end) inside the input. */
static MT_NN_INLINE int mt_nn_dw4_ok(const mt_conv_params *d, int32_t ky_begin, int32_t ky_end)
{
    return (d->kernel_w == 5 || d->kernel_w == 7) && d->kernel_h == d->kernel_w && d->act_min == -128 &&
           d->act_max == 127 && (d->stride_w == 1 || d->stride_w == 2) && d->out_w >= 4 &&
           ((ky_begin == 0 && ky_end == d->kernel_h) ||
            (d->out_w - 1) * d->stride_w + d->kernel_w + 3 <= MT_NN_DW4_ZROW);
}

/* `rows` output rows of channel c of depthwise conv d (square kernel 3, 5 or 7, stride 1 or 2, full
 * act range, out_w >= 4) by mt_nn_dw4_asm (outputs in fours, the last out_w % 4 in C with the same
 * raw sums and fast store); arguments as mt_nn_dw_plane_rows_s8, zrow: MT_NN_DW4_ZROW bytes of scratch
 * for the zero-point row (NULL when every window row is inside: ky_begin 0, ky_end kernel_h).
 * Returns 0 (nothing written) when the channel's constants do not allow the folded store. */
static MT_NN_NOINLINE int mt_nn_dw4_rows_s8(const mt_conv_params *d, const mt_nn_store *s, int32_t c,
                                            const int8_t *const *prow, int32_t ky_begin, int32_t ky_end,
                                            int32_t rows, int32_t row_step, const int8_t *w, int8_t *y,
                                            int32_t y_stride, int32_t y_row_stride, int8_t *zrow)
{
    const int32_t k = d->kernel_w, sw = d->stride_w, out_w = d->out_w, n4 = out_w & ~3, kc = MT_NN_DW4_TAPW(k);
    const int8_t *tab[7];
    int32_t own[MT_NN_DW4_WORDS(7)]; /* the channel's words when the conv has no pack */
    const int32_t *wk = mt_nn_dw4_words_of(s, c, w, k, d->input_zero_point, own);
    int32_t r, ky, ox;
    if (wk[kc + 3] == 0) {
        return 0; /* no folded store for this channel */
    }
    if (ky_begin > 0 || ky_end < k) {
        memset(zrow, (int)(int8_t)d->input_zero_point, MT_NN_DW4_ZROW);
    }
    for (ky = 0; ky < k; ++ky) {
        tab[ky] = ky >= ky_begin && ky < ky_end ? prow[ky] : zrow;
    }
    for (r = 0; r < rows; ++r) {
        int8_t *yr = y + r * y_row_stride;
        if (r > 0) { /* the next output row: its window rows row_step bytes on */
            for (ky = ky_begin; ky < ky_end; ++ky) {
                tab[ky] += row_step;
            }
        }
        mt_nn_dw4_asm(tab, wk, yr, y_stride, n4 * sw, k, sw);
        for (ox = n4; ox < out_w; ++ox) { /* the last outputs: the same raw sums, the same store */
            mt_nn_fast_store g;
            int32_t a = 0, kx;
            for (ky = 0; ky < k; ++ky) {
                for (kx = 0; kx < k; ++kx) {
                    a += (int32_t)tab[ky][ox * sw + kx] * w[ky * k + kx];
                }
            }
            mt_nn_zfold_store(wk[kc], wk + kc + 1, d->output_zero_point, &g);
            yr[ox * y_stride] = mt_nn_fast_out(a, g.bias2, g.multiplier, g.round, g.right, d->output_zero_point,
                                               -128, 127, 1);
        }
    }
    return 1;
}
#endif

#if MT_NN_MVE
#include "mt_nn_dw_mve.h"
#endif

/* `rows` output rows of channel c (weights w, kernel_h * kernel_w) of depthwise conv d from plane
 * rows: output row r reads window row ky at prow[ky] + r * row_step (ky in [ky_begin, ky_end)) and
 * writes y + r * y_row_stride + ox * y_stride. The channel's constants and packed weights are set up
 * once; the fast store where they qualify (on Helium cores four outputs at a time,
 * mt_nn_dw_mve.h), else the reference sums and store. */
static MT_NN_NOINLINE void mt_nn_dw_plane_rows_s8(const mt_conv_params *d, const mt_nn_store *s, int32_t c,
                                          const int8_t *const *prow, int32_t ky_begin, int32_t ky_end, int32_t rows,
                                          int32_t row_step, const int8_t *w, int8_t *y, int32_t y_stride,
                                          int32_t y_row_stride)
{
    int32_t ox, ky, r;
#if MT_NN_VEC
    if (mt_nn_vec_dw_plane_rows_s8(d, s, c, prow, ky_begin, ky_end, rows, row_step, w, y, y_stride, y_row_stride)) {
        return;
    }
#endif
#if MT_NN_MVE
    if (mt_nn_mve_dw_plane_rows_s8(d, s, c, prow, ky_begin, ky_end, rows, row_step, w, y, y_stride, y_row_stride)) {
        return;
    }
#endif
#if MT_NN_DSP
    const int8_t *pr[MT_NN_IB_MAX_KERNEL];
    const int64_t bound = (int64_t)d->kernel_h * d->kernel_w * 32640;
    const int32_t bias = s->bias != NULL ? s->bias[c] : 0;
    const int full = d->act_min == -128 && d->act_max == 127;
    int32_t wp[MT_NN_DW_PLANE_WORDS];
    mt_nn_fast_store f;
#if MT_NN_DSP_ASM
    if (mt_nn_dw4_ok(d, ky_begin, ky_end) &&
        mt_nn_dw4_rows_s8(d, s, c, prow, ky_begin, ky_end, rows, row_step, w, y, y_stride, y_row_stride,
                          (int8_t *)(void *)wp)) {
        return; /* four outputs per iteration */
    }
    if (full && d->kernel_h == 3 && d->kernel_w == 3 && d->out_w >= 2 && (d->stride_w == 1 || d->stride_w == 2) &&
        ((ky_begin == 0 && ky_end == 3) || (rows == 1 && (d->out_w - 1) * d->stride_w + 6 <= (int32_t)sizeof wp))) {
        /* the asm rows, with the zero point folded: the channel's words (mt_nn_dw4_words) */
        int32_t own[MT_NN_DW4_WORDS(3)];
        const int32_t *wk = mt_nn_dw4_words_of(s, c, w, 3, d->input_zero_point, own);
        if (wk[9] != 0) {
            const int32_t pairs = d->out_w >> 1, quads = d->out_w >> 2, sw = d->stride_w, odd = d->out_w & 1;
            /* one row (rows == 1) whose window rows outside the input read a row of the zero point (the
             * folded bias2 counts z for every tap) */
            const int8_t *const zrow = (const int8_t *)(const void *)wp;
            const int8_t *const q0 = ky_begin > 0 ? zrow : prow[0], *const q1 = ky_begin > 1 || ky_end < 2 ? zrow : prow[1];
            const int8_t *const q2 = ky_end < 3 ? zrow : prow[2];
            if (ky_begin > 0 || ky_end < 3) {
                const int32_t zz = (int32_t)((uint32_t)(uint8_t)d->input_zero_point * 0x01010101u);
                for (ky = 0; ky < ((d->out_w - 1) * d->stride_w + 9) >> 2; ++ky) {
                    wp[ky] = zz;
                }
            }
            if (rows > 1 && (d->out_w & 3) == 0) { /* whole rows of quads, the rows looped in the asm */
                mt_nn_dw3_quad_rows_asm(q0, q1, q2, wk, y, y_stride, d->out_w, sw == 2, rows, row_step, y_row_stride);
                return;
            }
            for (r = 0; r < rows; ++r) {
                const int8_t *p0 = q0 + r * row_step, *p1 = q1 + r * row_step, *p2 = q2 + r * row_step;
                int8_t *yr = y + r * y_row_stride;
                if (quads > 0) { /* four outputs per iteration, then the last pair */
                    mt_nn_dw3_quads_asm(p0, p1, p2, wk, yr, y_stride, p0 + quads * 4 * sw, sw == 2);
                }
                if (pairs > 2 * quads) {
                    const int32_t o4 = quads * 4 * sw;
                    mt_nn_dw3_pairs_asm(p0 + o4, p1 + o4, p2 + o4, wk, yr + quads * 4 * y_stride, y_stride,
                                        p0 + pairs * 2 * sw, sw == 2);
                }
                if (odd) { /* the last output: the same raw window sum in C (lane offset 0; the doubled
                            * weights' sum halved, exactly), the same store */
                    const int32_t last = d->out_w - 1;
                    mt_nn_fast_store g;
                    int32_t a = mt_nn_dw_plane_taps(p0 + last * sw, wk, 1, 0, 0);
                    mt_nn_zfold_store(wk[6], wk + 7, d->output_zero_point, &g);
                    a = mt_nn_dw_plane_taps(p1 + last * sw, wk + 2, 1, 0, a);
                    a = mt_nn_dw_plane_taps(p2 + last * sw, wk + 4, 1, 0, a);
                    yr[last * y_stride] = mt_nn_fast_out(a >> 1, g.bias2, g.multiplier, g.round, g.right,
                                                         d->output_zero_point, -128, 127, 1);
                }
            }
            return;
        }
    }
#endif
    if (mt_nn_fast_store_of(bias, 0, s->multiplier[c], s->shift[c], bound, bound, &f)) {
        const int32_t lanes = mt_nn_lane_offset(d->input_zero_point);
        mt_nn_dw_plane_pack(w, d->kernel_h, d->kernel_w, wp);
        for (r = 0; r < rows; ++r) {
            for (ky = ky_begin; ky < ky_end; ++ky) {
                pr[ky] = prow[ky] + r * row_step;
            }
            if (full) {
                mt_nn_dw_plane_row_any_s8(d, pr, ky_begin, ky_end, wp, lanes, &f, y + r * y_row_stride, y_stride, 1);
            } else {
                mt_nn_dw_plane_row_any_s8(d, pr, ky_begin, ky_end, wp, lanes, &f, y + r * y_row_stride, y_stride, 0);
            }
        }
        return;
    }
#endif
    for (r = 0; r < rows; ++r) {
        for (ox = 0; ox < d->out_w; ++ox) {
            int32_t acc = 0;
            for (ky = ky_begin; ky < ky_end; ++ky) {
                acc += mt_nn_dw_row_s8(prow[ky] + r * row_step + ox * d->stride_w, 1, w + ky * d->kernel_w,
                                       d->kernel_w, d->input_zero_point);
            }
            y[r * y_row_stride + ox * y_stride] = mt_nn_store_s8(acc, s, c);
        }
    }
}

#if MT_NN_DSP_ASM
/* One output row (or strip) of the channels c0, c0 + 1, ... of depthwise conv d from plane rows, the
 * window row ky of channel c at prow[ky] + c * seg (ky in [ky_begin, ky_end)), outputs y[ox * C + c],
 * when d has a pack (s->pack) and its asm rows apply: the per-call checks once per row, each
 * channel's words in place (the 3x3 pairs inlined in the channel loop, the 5x5 / 7x7 rows called
 * directly). Returns the first channel it did not compute (one without the folded store, for
 * mt_nn_dw_plane_rows_s8; C when done), or -1 when it computes none (no pack, other shapes). The
 * caller calls mt_nn_dw_plane_rows_s8 itself, so that its frame does not add to this one's. */
static MT_NN_NOINLINE int32_t mt_nn_dw_plane_channels_s8(const mt_conv_params *d, const mt_nn_store *s,
                                                         const int8_t *const *prow, int32_t seg, int32_t ky_begin,
                                                         int32_t ky_end, const int8_t *weights, int8_t *y, int32_t c0)
{
    const int32_t C = d->in_c, K = d->kernel_h * d->kernel_w, k = d->kernel_w;
    const int32_t *pk = mt_nn_dw_pack_of(s->pack, k);
    int32_t c = c0, ky;
    if (pk == NULL || d->kernel_h != k || ky_begin != 0 || ky_end != k || d->act_min != -128 || d->act_max != 127 ||
        (d->stride_w != 1 && d->stride_w != 2)) {
        return -1;
    }
    if (k == 3 && d->out_w >= 2) { /* the 3x3 asm rows, channel after channel (as mt_nn_dw_plane_rows_s8's) */
        const int32_t pairs = d->out_w >> 1, quads = d->out_w >> 2, sw = d->stride_w, last = d->out_w - 1;
        const int32_t o4 = quads * 4 * sw, span = pairs * 2 * sw;
        const int8_t *p0 = prow[0] + c * seg, *p1 = prow[1] + c * seg, *p2 = prow[2] + c * seg;
        for (pk += c * MT_NN_DW4_WORDS(3); c < C; ++c, pk += MT_NN_DW4_WORDS(3), p0 += seg, p1 += seg, p2 += seg) {
            if (pk[9] == 0) {
                return c; /* no folded store for this channel */
            }
            if (quads > 0) { /* four outputs per iteration, then the last pair */
                mt_nn_dw3_quads_asm(p0, p1, p2, pk, y + c, C, p0 + o4, sw == 2);
            }
            if (pairs > 2 * quads) {
                mt_nn_dw3_pairs_asm(p0 + o4, p1 + o4, p2 + o4, pk, y + c + quads * 4 * C, C, p0 + span, sw == 2);
            }
            if ((d->out_w & 1) != 0) { /* the last output in C, as mt_nn_dw_plane_rows_s8 */
                mt_nn_fast_store g;
                int32_t a = mt_nn_dw_plane_taps(p0 + last * sw, pk, 1, 0, 0);
                a = mt_nn_dw_plane_taps(p1 + last * sw, pk + 2, 1, 0, a);
                a = mt_nn_dw_plane_taps(p2 + last * sw, pk + 4, 1, 0, a);
                mt_nn_zfold_store(pk[6], pk + 7, d->output_zero_point, &g);
                y[last * C + c] = mt_nn_fast_out(a >> 1, g.bias2, g.multiplier, g.round, g.right, d->output_zero_point,
                                                 -128, 127, 1);
            }
        }
        return C;
    }
    if (mt_nn_dw4_ok(d, ky_begin, ky_end)) { /* the 5x5 / 7x7 four-output rows, channel after channel */
        const int8_t *pr[7];
        for (; c < C; ++c) {
            for (ky = 0; ky < k; ++ky) {
                pr[ky] = prow[ky] + c * seg;
            }
            if (!mt_nn_dw4_rows_s8(d, s, c, pr, 0, k, 1, 0, weights + c * K, y + c, C, 0, NULL)) {
                return c;
            }
        }
        return C;
    }
    return -1;
}
#endif

#endif /* MT_NN_DW_H */
