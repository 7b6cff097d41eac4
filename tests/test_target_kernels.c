/*
 * Cross-target check of the microtrain runtime: the same deterministic inputs through int8
 * forward, fp32 backward and update kernels, every output appended to out.bin. Built with
 * host gcc and with arm-none-eabi-gcc (run on QEMU mps2-an500); tests/test_target_kernels.py
 * compares the two files byte for byte. Only stdio, so it runs unchanged on both.
 *
 * The second part (random_shapes) checks, on whichever path the build compiled (the
 * Cortex-M7 build takes the __ARM_FEATURE_DSP path of mt_nn.h, the host the portable one),
 * the int8 dot-product helpers against a naive loop on random lengths, alignments and zero
 * points, the saturating add and output clamp against int64 arithmetic, and the forward kernels against a naive direct convolution in this file on random
 * shapes (and the fused block against its ops run one by one); it prints "dsp path <0|1>"
 * and the number of mismatches, and appends every output to out.bin as well.
 */
#include <stdio.h>
#include <string.h>

#include "mt_nn.h" /* MT_NN_DSP and the dot-product helpers; includes mt_runtime.h */

static uint32_t rng = 12345u;
static uint32_t next(void) { rng = rng * 1664525u + 1013904223u; return rng >> 8; }
static void fill_s8(int8_t *x, int n) { for (int i = 0; i < n; i++) x[i] = (int8_t)((int)(next() % 255u) - 127); }
static void fill_f32(float *x, int n) { for (int i = 0; i < n; i++) x[i] = ((float)(next() % 2001u) - 1000.0f) / 997.0f; }

static FILE *out;
static int failures;
static void put(const void *p, size_t n) { fwrite(p, 1, n, out); }
static void check(mt_status s, const char *what)
{
    int32_t code = (int32_t)s; /* enums are 1 byte with the bare-metal EABI, 4 on the host */
    put(&code, sizeof code);
    if (s != MT_OK) { printf("%s returned %d\n", what, (int)s); failures++; }
}

enum { H = 9, W = 7, C = 6, OC = 8, K = 3 };
static int8_t in[H * W * C], in2[H * W * C], wts[OC * K * K * C], dw[C * K * K], o8[H * W * OC];
static int32_t bias[OC], mult[OC], shift[OC], bias32[OC];
static float gout[H * W * OC], gin[H * W * C], gw[OC * K * K * C], scale[OC], factor[OC], logits[10], gl[10];


/* ---- random shapes: kernels vs a naive reference ---- */
static int rnd(int lo, int hi) { return lo + (int)(next() % (uint32_t)(hi - lo + 1)); }

static int32_t naive_dot(const int8_t *x, const int8_t *w, int32_t n, int32_t z, int32_t stride)
{
    int32_t acc = 0;
    for (int32_t i = 0; i < n; i++) acc += ((int32_t)x[i * stride] - z) * (int32_t)w[i];
    return acc;
}

/* Direct convolution: int64 sum over the window inside the input, + bias, saturated to int32,
 * one mt_requantize, + zero point, clamp (the reference semantics, written the plain way). */
static void naive_conv(const mt_conv_params *p, const mt_per_channel_quant *q, const int8_t *x, const int8_t *w,
                       const int32_t *b, int8_t *y)
{
    const int ipg = p->in_c / p->groups, opg = p->out_c / p->groups;
    for (int oy = 0; oy < p->out_h; oy++)
        for (int ox = 0; ox < p->out_w; ox++)
            for (int oc = 0; oc < p->out_c; oc++) {
                int64_t acc = b ? b[oc] : 0;
                for (int ky = 0; ky < p->kernel_h; ky++)
                    for (int kx = 0; kx < p->kernel_w; kx++) {
                        const int iy = oy * p->stride_h - p->pad_top + ky, ix = ox * p->stride_w - p->pad_left + kx;
                        if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) continue;
                        for (int i = 0; i < ipg; i++)
                            acc += ((int64_t)x[(iy * p->in_w + ix) * p->in_c + (oc / opg) * ipg + i] - p->input_zero_point) *
                                   w[((oc * p->kernel_h + ky) * p->kernel_w + kx) * ipg + i];
                    }
                const int32_t a = acc > INT32_MAX ? INT32_MAX : acc < INT32_MIN ? INT32_MIN : (int32_t)acc;
                int64_t r = (int64_t)mt_requantize(a, q->multiplier[oc], q->shift[oc]) + p->output_zero_point;
                y[(oy * p->out_w + ox) * p->out_c + oc] = (int8_t)(r < p->act_min ? p->act_min : r > p->act_max ? p->act_max : r);
            }
}

/* Largest random height and width (12 on the cores; tests/test_host_vec.py also builds the host with
 * -DMT_TEST_RH=40: rows longer than the 16-output groups of the vector depthwise, mt_nn_dw_vec.h). */
#ifndef MT_TEST_RH
#define MT_TEST_RH 12
#endif
enum { RH = MT_TEST_RH, RC = 16, RK = 7 };
static int8_t rx[RH * RH * RC + 4], rw[RC * RK * RK * RC + 4], ry[RH * RH * RC], rref[RH * RH * RC];
static int8_t rmid[RH * RH * RC], rmid2[RH * RH * RC], rscratch[4 * 64 + RK * (RH + RK) * RC + 4 + 16 * 64 + 2 * RH * RC];
static int32_t rbias[RC], rmult[RC], rshift[RC];

static void random_conv_params(mt_conv_params *p, int in_h, int in_w, int in_c, int out_c, int k, int s, int pad,
                               int groups)
{
    mt_conv_params c = {in_h, in_w, in_c, 0, 0, out_c, k, k, s, s, pad, pad, pad, pad, groups, rnd(-128, 127),
                        rnd(-128, 127), -128, 127};
    c.out_h = (in_h + 2 * pad - k) / s + 1;
    c.out_w = (in_w + 2 * pad - k) / s + 1;
    if (rnd(0, 1)) { c.act_min = rnd(-128, 0); c.act_max = rnd(c.act_min, 127); }
    *p = c;
}

/* Per-channel bias and requantization constants: typical ones (the fast output store of
 * mt_nn_fast.h applies), or with `extreme` a mix that also exercises its refusals and the
 * reference store: biases near the int32 limits, left shifts, shifts down to -31, M = 0, dead
 * channels (a bias at the int32 limit and a tiny scale, as in the zoo models: a constant output). */
static void random_quant(int n, int extreme)
{
    for (int c = 0; c < n; c++) {
        rbias[c] = rnd(-20000, 20000);
        rmult[c] = (int32_t)((1u << 30) + (next() % (1u << 30)));
        rshift[c] = -rnd(4, 12);
        if (extreme) {
            switch (rnd(0, 6)) {
            case 0: rbias[c] = (int32_t)(next() | 0x40000000u) * (rnd(0, 1) ? 1 : -1); break;
            case 1: rshift[c] = rnd(0, 3); break;
            case 2: rshift[c] = -rnd(20, 31); break;
            case 3: rmult[c] = rnd(0, 1) ? 0 : INT32_MAX; break;
            case 4: rbias[c] = (1 << 30) - rnd(0, 3000) * (rnd(0, 1) ? 1 : -1); break;
            case 5: rbias[c] = rnd(0, 1) ? INT32_MIN : INT32_MAX; rshift[c] = -rnd(20, 31); break; /* dead channel */
            default: break;
            }
        }
    }
}

static int compare(const int8_t *a, const int8_t *b, int n, const char *what, int case_no)
{
    put(a, (size_t)n);
    if (memcmp(a, b, (size_t)n) != 0) { printf("mismatch %s case %d\n", what, case_no); return 1; }
    return 0;
}

/* The 1x1 conv p with its set-up pack (mt_conv_pack_s8: the words, with the pre-extended rows, the rows alone), vs the
 * expected output want (the kernel without a pack, itself checked against the naive conv). */
enum { PACK_WORDS = 1024 };
static int packed_pointwise(const mt_conv_params *p, const int8_t *x, const int8_t *w, const int32_t *b,
                            const int8_t *want, int n, const char *what, int case_no)
{
    static int32_t pk[PACK_WORDS];
    static int8_t y[RH * RH * RC > 70 * 5 ? RH * RH * RC : 70 * 5];
    const mt_per_channel_quant q = {rmult, rshift, NULL}, qp = {rmult, rshift, pk};
    int bad = 0;
    for (int extended = 0; extended < 3; extended++) { /* words, words + rows, rows alone */
        if (mt_conv_pack_get_size(p, extended) > (int32_t)sizeof pk || n > (int)sizeof y) { printf("pack size\n"); return 1; }
        check(mt_conv_pack_s8(p, &q, w, b, extended, pk), "pack");
        check(mt_pointwise_conv2d_s8(p, &qp, x, w, b, y), what);
        bad += compare(y, want, n, what, case_no);
    }
    return bad;
}

/* The same for a depthwise conv (square 3x3, 5x5, 7x7 kernel: the packed taps and store words). */
enum { DW_PACK_WORDS = 2 + 32 * RC };
static int packed_depthwise(const mt_conv_params *p, const int8_t *x, const int8_t *w, const int32_t *b,
                            const int8_t *want, int n, const char *what, int case_no)
{
    static int32_t pk[DW_PACK_WORDS];
    static int8_t y[RH * RH * RC];
    const mt_per_channel_quant q = {rmult, rshift, NULL}, qp = {rmult, rshift, pk};
    if (mt_conv_pack_get_size(p, 0) > (int32_t)sizeof pk || n > (int)sizeof y) { printf("pack size\n"); return 1; }
    check(mt_conv_pack_s8(p, &q, w, b, 0, pk), "depthwise pack");
    check(mt_depthwise_conv2d_s8(p, &qp, x, w, b, y), what);
    return compare(y, want, n, what, case_no);
}

static int random_shapes(void)
{
    int bad = 0;
    mt_per_channel_quant q = {rmult, rshift, NULL};
    printf("dsp path %d\n", MT_NN_DSP);
    printf("mve path %d\n", MT_NN_MVE);
    printf("vec path %d\n", MT_NN_VEC);
    /* the helpers, on random lengths (the DSP loop + every tail), misaligned pointers and zero points */
    for (int t = 0; t < 400; t++) {
        const int32_t n = rnd(0, 70), z = rnd(-128, 127), ox = rnd(0, 3), ow = rnd(0, 3);
        int32_t acc[2] = {rnd(-1000, 1000), rnd(-1000, 1000)}, want0 = acc[0], want1 = acc[1];
        fill_s8(rx, n + 4); fill_s8(rw, 2 * n + 4);
        if (t % 7 == 0) { for (int i = 0; i < n + 4; i++) { rx[i] = (int8_t)(t & 1 ? 127 : -128); rw[i] = -128; } }
        if (mt_nn_dot_s8(rx + ox, rw + ow, n, z) != naive_dot(rx + ox, rw + ow, n, z, 1)) { bad++; printf("dot n %d\n", (int)n); }
        want0 += naive_dot(rx + ox, rw + ow, n, z, 1);
        want1 += naive_dot(rx + ox, rw + ow + n, n, z, 1);
        mt_nn_dot2_s8(rx + ox, rw + ow, rw + ow + n, n, z, acc);
        if (acc[0] != want0 || acc[1] != want1) { bad++; printf("dot2 n %d\n", (int)n); }
        const int32_t taps = rnd(1, 7), stride = rnd(1, 9);
        if (taps * stride <= n + 4 && mt_nn_dw_row_s8(rx, stride, rw, taps, z) != naive_dot(rx, rw, taps, z, stride)) {
            bad++; printf("dw_row taps %d\n", (int)taps);
        }
        put(&acc, sizeof acc);
    }
#if MT_NN_DSP_ASM
    /* the pre-extended rows of a 1x1 pack (portable, computed on the host) are the words the DSP
     * extension writes (doubled, zero past n) */
    for (int t = 0; t < 60; t++) {
        static int32_t got[2 * 72], want[2 * 72];
        const int32_t n = rnd(1, 70), ne = (n + 3) & ~3;
        fill_s8(rw, 2 * n);
        mt_nn_extend2_pad_s8(rw, rw + n, n, ne, got, 1);
        mt_nn_extend2_ref_s8(rw, rw + n, n, want);
        if (memcmp(got, want, (size_t)ne * 4) != 0) { bad++; printf("extend2 n %d\n", (int)n); }
    }
#endif
    /* the saturating add and the offset + clamp of the output store (QADD on the DSP path) */
    for (int t = 0; t < 2000; t++) {
        static const int32_t edge[] = {INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX};
        const int32_t a = t < 49 ? edge[t % 7] : (int32_t)(next() << 8) ^ (int32_t)next();
        const int32_t b = t < 49 ? edge[t / 7] : (int32_t)(next() << 8) ^ (int32_t)next();
        const int64_t sum = (int64_t)a + b;
        const int32_t want = sum > INT32_MAX ? INT32_MAX : sum < INT32_MIN ? INT32_MIN : (int32_t)sum;
        const int32_t z = rnd(-128, 127), lo = rnd(-128, 127), hi = rnd(lo, 127);
        const int64_t v = (int64_t)a + z;
        const int8_t want_store = (int8_t)(v < lo ? lo : v > hi ? hi : v);
        if (mt_nn_sat_add_s32(a, b) != want) { bad++; printf("sat_add %ld %ld\n", (long)a, (long)b); }
        if (mt_nn_offset_clamp(a, z, lo, hi) != want_store) { bad++; printf("offset_clamp %ld\n", (long)a); }
        put(&want, sizeof want);
    }
    /* the kernels, on random shapes */
    for (int t = 0; t < 60; t++) {
        const int kind = t % 4; /* 0 conv groups 1, 1 depthwise, 2 pointwise (+ rows), 3 fc */
        const int k = kind == 2 ? 1 : rnd(1, RK), in_h = rnd(k, RH), in_w = rnd(k, RH);
        const int in_c = rnd(1, RC), out_c = kind == 1 ? in_c : rnd(1, RC);
        const int s = kind == 2 ? 1 : rnd(1, 2), pad = kind == 2 ? 0 : rnd(0, k / 2); /* output <= input */
        mt_conv_params p;
        random_conv_params(&p, in_h, in_w, in_c, out_c, k, s, pad, kind == 1 ? in_c : 1);
        fill_s8(rx, in_h * in_w * in_c);
        fill_s8(rw, out_c * k * k * (kind == 1 ? 1 : in_c));
        random_quant(out_c, t % 3 == 2);
        const int32_t *b = t % 5 == 4 ? NULL : rbias;
        const int n_out = p.out_h * p.out_w * out_c;
        if (kind == 3) {
            mt_fc_params f = {in_h * in_c, out_c, p.input_zero_point, p.output_zero_point, p.act_min, p.act_max};
            mt_conv_params as_conv = {1, 1, f.in_c, 1, 1, out_c, 1, 1, 1, 1, 0, 0, 0, 0, 1, f.input_zero_point,
                                      f.output_zero_point, f.act_min, f.act_max};
            fill_s8(rw, out_c * f.in_c);
            naive_conv(&as_conv, &q, rx, rw, b, rref);
            check(mt_fully_connected_s8(&f, &q, rx, rw, b, ry), "random fc");
            bad += compare(ry, rref, out_c, "fc", t);
            continue;
        }
        naive_conv(&p, &q, rx, rw, b, rref);
        check(mt_conv2d_s8(&p, &q, rx, rw, b, ry), "random conv2d");
        bad += compare(ry, rref, n_out, "conv2d", t);
        if (kind == 1) {
            check(mt_depthwise_conv2d_s8(&p, &q, rx, rw, b, ry), "random depthwise");
            bad += compare(ry, rref, n_out, "depthwise", t);
        }
        if (kind == 2) {
            const int8_t *rows[RC];
            check(mt_pointwise_conv2d_s8(&p, &q, rx, rw, b, ry), "random pointwise");
            bad += compare(ry, rref, n_out, "pointwise", t);
            bad += packed_pointwise(&p, rx, rw, b, rref, n_out, "pointwise, packed", t);
            for (int c = 0; c < out_c; c++) rows[c] = rw + (out_c - 1 - c) * in_c; /* rows given out of order */
            for (int c = 0; c < out_c; c++) memcpy(rmid + c * in_c, rows[c], (size_t)in_c);
            naive_conv(&p, &q, rx, rmid, b, rref);
            check(mt_pointwise_conv2d_rows_s8(&p, &q, rx, NULL, rows, b, ry), "random pointwise rows");
            bad += compare(ry, rref, n_out, "pointwise rows", t);
        }
    }
    /* long rows: the pointwise kernel without pre-extended weights (in_c > MT_NN_PW_EXTEND_MAX), odd
     * lengths, odd pixel and channel counts */
    for (int t = 0; t < 16; t++) {
        static const int lengths[] = {255, 256, 257, 300, 13, 4, 3, 258};
        const int in_c = lengths[t % 8], out_c = rnd(1, 5), hw = rnd(1, 4);
        mt_conv_params p;
        random_conv_params(&p, 1, hw, in_c, out_c, 1, 1, 0, 1);
        fill_s8(rx, hw * in_c);
        fill_s8(rw, out_c * in_c);
        random_quant(out_c, t % 4 == 3);
        naive_conv(&p, &q, rx, rw, rbias, rref);
        check(mt_pointwise_conv2d_s8(&p, &q, rx, rw, rbias, ry), "long pointwise");
        bad += compare(ry, rref, hw * out_c, "long pointwise", t);
        bad += packed_pointwise(&p, rx, rw, rbias, rref, hw * out_c, "long pointwise, packed", t);
    }
    /* rows too long to pre-extend at once, over more pixels than one group of the chunked sums
     * (mt_nn_pointwise_pair_chunked_s8: several chunks, several pixel groups, an odd last pixel) */
    for (int t = 0; t < 6; t++) {
        enum { LP = 70, LC = 260, LO = 5 };
        static int8_t lx[LP * LC], lw[LO * LC], ly[LP * LO], lref[LP * LO];
        static const int lengths[] = {132, 200, 257, 129, 260, 195};
        const int in_c = lengths[t], out_c = rnd(2, LO), hw = rnd(33, LP);
        mt_conv_params p;
        random_conv_params(&p, 1, hw, in_c, out_c, 1, 1, 0, 1);
        fill_s8(lx, hw * in_c);
        fill_s8(lw, out_c * in_c);
        random_quant(out_c, t == 5);
        naive_conv(&p, &q, lx, lw, rbias, lref);
        check(mt_pointwise_conv2d_s8(&p, &q, lx, lw, rbias, ly), "long pointwise, many pixels");
        bad += compare(ly, lref, hw * out_c, "long pointwise, many pixels", t);
        bad += packed_pointwise(&p, lx, lw, rbias, lref, hw * out_c, "long pointwise, many pixels, packed", t);
    }
    /* the 3x3 depthwise of the asm pairs (mt_nn_dw.h: stride 1 and 2, full act range, odd and even
     * widths) and its refusals (extreme constants, a clamped act range) */
    for (int t = 0; t < 40; t++) {
        const int in_h = rnd(3, RH), in_w = rnd(3, RH), in_c = rnd(1, RC), s = 1 + t % 2, pad = rnd(0, 1);
        mt_conv_params p;
        random_conv_params(&p, in_h, in_w, in_c, in_c, 3, s, pad, in_c);
        if (t % 6 != 5) { p.act_min = -128; p.act_max = 127; }
        fill_s8(rx, in_h * in_w * in_c);
        fill_s8(rw, in_c * 9);
        random_quant(in_c, t % 5 == 4);
        const int32_t *b = t % 7 == 6 ? NULL : rbias;
        naive_conv(&p, &q, rx, rw, b, rref);
        check(mt_depthwise_conv2d_s8(&p, &q, rx, rw, b, ry), "3x3 depthwise");
        bad += compare(ry, rref, p.out_h * p.out_w * in_c, "3x3 depthwise", t);
        bad += packed_depthwise(&p, rx, rw, b, rref, p.out_h * p.out_w * in_c, "3x3 depthwise, packed", t);
    }
    /* the 5x5 and 7x7 depthwise of the four-output asm (mt_nn_dw.h: stride 1 and 2, full act range,
     * widths with and without a remainder of four) and its refusals (extreme constants, a clamped
     * act range) */
    for (int t = 0; t < 48; t++) {
        const int k = t % 2 ? 5 : 7, s = 1 + (t / 2) % 2, pad = t % 9 == 8 ? rnd(0, k / 2) : k / 2;
        const int in_h = rnd(k - 2 * pad > 1 ? k - 2 * pad : 1, RH), in_w = rnd(k - 2 * pad > 1 ? k - 2 * pad : 1, RH);
        const int in_c = rnd(1, RC);
        mt_conv_params p;
        random_conv_params(&p, in_h, in_w, in_c, in_c, k, s, pad, in_c);
        if (t % 6 != 5) { p.act_min = -128; p.act_max = 127; }
        fill_s8(rx, in_h * in_w * in_c);
        fill_s8(rw, in_c * k * k);
        random_quant(in_c, t % 5 == 4);
        const int32_t *b = t % 7 == 6 ? NULL : rbias;
        naive_conv(&p, &q, rx, rw, b, rref);
        check(mt_depthwise_conv2d_s8(&p, &q, rx, rw, b, ry), "5x5/7x7 depthwise");
        bad += compare(ry, rref, p.out_h * p.out_w * in_c, "5x5/7x7 depthwise", t);
        bad += packed_depthwise(&p, rx, rw, b, rref, p.out_h * p.out_w * in_c, "5x5/7x7 depthwise, packed", t);
    }
    /* small maps (at most 4x4 outputs) with 5x5 and 7x7 windows: the channel-innermost loop of the
     * standalone depthwise (mt_depthwise_conv2d_s8.c: four channels at a time, padded taps skipped), with
     * channel counts not a multiple of 4, dead channels and refusals (extreme constants), a clamped act
     * range, padding from none to kernel / 2, stride 1 and 2; and 3x3 rows of 4-12 outputs (the asm
     * quads of mt_nn_dw.h and their last pair and odd output) */
    for (int t = 0; t < 48; t++) {
        const int k = t % 3 == 2 ? 3 : t % 3 ? 5 : 7, s = 1 + (t / 3) % 2, pad = t % 8 == 7 ? rnd(0, k / 2) : k / 2;
        const int lo = k - 2 * pad > 1 ? k - 2 * pad : 1;
        const int hi = k == 3 ? RH : (s == 1 ? 4 : 8) + k - 1 - 2 * pad;
        const int in_h = rnd(lo, hi > lo ? (hi < RH ? hi : RH) : lo), in_w = rnd(lo, hi > lo ? (hi < RH ? hi : RH) : lo);
        const int in_c = t % 4 == 3 ? rnd(1, RC) : 4 * rnd(1, RC / 4);
        mt_conv_params p;
        random_conv_params(&p, in_h, in_w, in_c, in_c, k, s, pad, in_c);
        if (t % 6 != 5) { p.act_min = -128; p.act_max = 127; }
        fill_s8(rx, in_h * in_w * in_c);
        fill_s8(rw, in_c * k * k);
        random_quant(in_c, t % 5 == 4);
        const int32_t *b = t % 7 == 6 ? NULL : rbias;
        naive_conv(&p, &q, rx, rw, b, rref);
        check(mt_depthwise_conv2d_s8(&p, &q, rx, rw, b, ry), "small-map depthwise");
        bad += compare(ry, rref, p.out_h * p.out_w * in_c, "small-map depthwise", t);
    }
    /* the fused block vs its ops one by one (expand kxk -> depthwise -> 1x1 [-> ADD]) */
    for (int t = 0; t < 40; t++) {
        mt_inverted_bottleneck_params ib;
        memset(&ib, 0, sizeof ib);
        /* every tenth block 1-2 rows high: depthwise rows with both window borders in the padding */
        const int in_h = t % 10 == 9 ? rnd(1, 2) : rnd(3, RH), in_w = rnd(3, RH), in_c = rnd(1, 8), mid = rnd(1, RC);
        const int ek = t % 3 == 0 ? 3 : 1, dk = t % 2 ? 3 : (t / 4) % 2 ? 7 : 5, ds = t % 4 < 2 ? 1 : 2;
        const int residual = ek == 1 && ds == 1 && t % 5 != 0;
        const int out_c = residual ? in_c : rnd(1, 8);
        ib.has_expand = 1;
        random_conv_params(&ib.expand, in_h, in_w, in_c, mid, ek, 1, ek / 2, 1);
        random_conv_params(&ib.depthwise, in_h, in_w, mid, mid, dk < in_h && dk < in_w ? dk : 3, ds, 1, mid);
        ib.depthwise.pad_top = ib.depthwise.pad_left = ib.depthwise.pad_bottom = ib.depthwise.pad_right =
            ib.depthwise.kernel_h / 2;
        ib.depthwise.out_h = (in_h + 2 * ib.depthwise.pad_top - ib.depthwise.kernel_h) / ds + 1;
        ib.depthwise.out_w = (in_w + 2 * ib.depthwise.pad_left - ib.depthwise.kernel_w) / ds + 1;
        ib.depthwise.input_zero_point = ib.expand.output_zero_point;
        random_conv_params(&ib.project, ib.depthwise.out_h, ib.depthwise.out_w, mid, out_c, 1, 1, 0, 1);
        ib.project.input_zero_point = ib.depthwise.output_zero_point;
        random_quant(RC, t % 4 == 3);
        ib.expand_q = ib.depthwise_q = ib.project_q = q;
        static int8_t ew[RC * 9 * 8], dwt[RC * RK * RK], pw[8 * RC];
        fill_s8(rx, in_h * in_w * in_c); fill_s8(ew, mid * ek * ek * in_c); fill_s8(dwt, mid * RK * RK);
        fill_s8(pw, out_c * mid);
        check(mt_conv2d_s8(&ib.expand, &q, rx, ew, rbias, rmid), "ib expand");
        check(mt_depthwise_conv2d_s8(&ib.depthwise, &q, rmid, dwt, rbias, rmid2), "ib depthwise");
        check(mt_pointwise_conv2d_s8(&ib.project, &q, rmid2, pw, rbias, rref), "ib project");
        const int n_out = ib.project.out_h * ib.project.out_w * out_c;
        if (residual) {
            mt_add_params a = {n_out, ib.project.output_zero_point, ib.expand.input_zero_point, rnd(-128, 127), 20,
                               1518500250, -1, 1181116006, -2, 1431655765, -18, -128, 127};
            ib.has_residual = 1;
            ib.add = a;
            check(mt_add_s8(&a, rref, rx, rref), "ib add");
        }
        if (mt_inverted_bottleneck_get_buffer_size(&ib) > (int32_t)sizeof rscratch) { printf("scratch\n"); bad++; continue; }
        check(mt_inverted_bottleneck_s8(&ib, rx, ew, rbias, dwt, rbias, pw, rbias, ry, rscratch), "fused block");
        bad += compare(ry, rref, n_out, "fused block", t);
        { /* with the compile-time set-up packs of the expansion (1x1 or 3x3 patches), the depthwise and the projection */
            static int32_t epk[PACK_WORDS], ppk[PACK_WORDS], dpk[DW_PACK_WORDS];
            mt_inverted_bottleneck_params ibp = ib;
            const int ext = t % 3; /* the 1x1 packs: words, words + pre-extended rows, rows alone */
            if (mt_conv_pack_get_size(&ib.expand, ext) > (int32_t)sizeof epk ||
                mt_conv_pack_get_size(&ib.project, ext) > (int32_t)sizeof ppk ||
                mt_conv_pack_get_size(&ib.depthwise, 0) > (int32_t)sizeof dpk) { printf("pack size\n"); bad++; continue; }
            check(mt_conv_pack_s8(&ib.expand, &q, ew, rbias, ext, epk), "ib expand pack");
            check(mt_conv_pack_s8(&ib.project, &q, pw, rbias, ext, ppk), "ib project pack");
            check(mt_conv_pack_s8(&ib.depthwise, &q, dwt, rbias, 0, dpk), "ib depthwise pack");
            ibp.expand_q.pack = epk;
            ibp.project_q.pack = ppk;
            ibp.depthwise_q.pack = dpk;
            check(mt_inverted_bottleneck_s8(&ibp, rx, ew, rbias, dwt, rbias, pw, rbias, ry, rscratch), "fused block, packed");
            bad += compare(ry, rref, n_out, "fused block, packed", t);
        }
    }
    printf("random mismatches %d\n", bad);
    return bad;
}

/* The fused block backward (mt_inverted_bottleneck_grad_f32) on random shapes, masks, passes and
 * kept channels: its results go to out.bin, so the host and the Cortex-M7 (VMLA, cached float
 * weights) must agree byte for byte; tests/test_host_backward_stream.py checks the host's against
 * the unfused kernels and the Python eval rule. */
static void random_block_grads(void)
{
    enum { BH = 8, BC = 12, BO = 19, BI = 19 }; /* O, I past 8: the vector loops of the host (mt_nn_grad_vec.h) and their tails */
    static float go[BH * BH * BO], ps[BO], ds[BC], es[BC], gi[BH * BH * BI], db[BC], eb[BC], fac[BC], row[BI];
    static float scr[4 * 2 * BH * BH];
    static int8_t pw[BO * BC], dwk[BC * 49], ew[BC * BI], xin[BH * BH * BI];
    static uint8_t dm[(BH * BH * BC + 7) / 8], em[(BH * BH * BC + 7) / 8];
    static int32_t kept[BC];
    static float opt[BC * BI];  /* optimizer state of the kept rows (momentum or accumulation) */
    for (int t = 0; t < 24; t++) {
        const int h = rnd(2, BH), w = rnd(2, BH), C = rnd(1, BC), O = rnd(1, BO), I = rnd(1, BI);
        const int k = t % 3 == 0 ? 3 : t % 3 == 1 ? (h >= 5 && w >= 5 ? 5 : 3) : (h >= 7 && w >= 7 ? 7 : 3);
        const int st = rnd(1, 2), pad = k / 2;
        mt_inverted_bottleneck_grad_params p;
        memset(&p, 0, sizeof p);
        mt_conv_params d = {h, w, C, (h + 2 * pad - k) / st + 1, (w + 2 * pad - k) / st + 1, C, k, k, st, st,
                            pad, pad, pad, pad, C, 0, 0, -128, 127};
        p.depthwise = d;
        p.project_out_c = O;
        p.expand_in_c = I;
        p.input_zero_point = rnd(-128, 127);
        p.input_scale = 0.001f + (float)rnd(1, 100) * 1e-4f;
        p.channels_per_pass = rnd(1, 4);
        fill_f32(go, d.out_h * d.out_w * O);
        for (int i = 0; i < O; i++) ps[i] = 0.001f + (float)rnd(1, 1000) * 1e-5f;
        for (int i = 0; i < C; i++) {
            ds[i] = 0.001f + (float)rnd(1, 1000) * 1e-5f;
            es[i] = 0.001f + (float)rnd(1, 1000) * 1e-5f;
            fac[i] = 50.0f + (float)rnd(0, 100);
        }
        fill_s8(pw, O * C); fill_s8(dwk, C * k * k); fill_s8(ew, C * I); fill_s8(xin, h * w * I);
        for (int i = 0; i < (int)sizeof dm; i++) { dm[i] = (uint8_t)next(); em[i] = (uint8_t)next(); }
        int count = 0;
        for (int c = 0; c < C; c++) if (rnd(0, 2)) kept[count++] = c;
        /* plain SGD, momentum, or the last of K accumulated samples (the in-kernel update goes
         * through mt_sgd_update_s8, which reads and writes the state of row j) */
        fill_f32(opt, BC * BI);
        mt_update_params u = {0.37f, rnd(0, 1), 7u, (uint32_t)t, 2u, NULL, 0, 0.0f, NULL, 0.0f};
        if (t % 4 == 1) { u.momentum = opt; u.momentum_coef = 0.9f; }
        if (t % 4 == 2) { u.accum = opt; u.apply = 1; u.accum_scale = 0.25f; }
        mt_expand_update up = {ew, 0, fac, t % 5 == 0 ? NULL : kept, t % 5 == 0 ? C : count, u, row};
        check(mt_inverted_bottleneck_grad_f32(&p, go, pw, ps, dm, dwk, ds, em, ew, NULL, es, xin, &up, gi, db, eb, scr),
              "block grads");
        put(gi, sizeof(float) * (size_t)(h * w * I));
        put(db, sizeof(float) * (size_t)C);
        put(eb, sizeof(float) * (size_t)C);
        put(ew, (size_t)(C * I));
        put(opt, sizeof(float) * (size_t)(BC * BI));
    }
}

int main(void)
{
    out = fopen("out.bin", "wb");
    if (!out) { printf("cannot open out.bin\n"); return 2; }
    fill_s8(in, H * W * C); fill_s8(in2, H * W * C); fill_s8(wts, OC * K * K * C); fill_s8(dw, C * K * K);
    for (int c = 0; c < OC; c++) {
        bias[c] = (int32_t)(next() % 20001u) - 10000;
        mult[c] = (int32_t)((1u << 30) + (next() % (1u << 30)));
        shift[c] = -(int32_t)(next() % 6u) - 6;
        scale[c] = 0.001f + (float)(next() % 1000u) * 1e-5f;
        factor[c] = 1.0f / scale[c];
    }
    mt_per_channel_quant q = {mult, shift, NULL};

    mt_conv_params p = {H, W, C, (H + 2 - K) / 2 + 1, (W + 2 - K) / 2 + 1, OC, K, K, 2, 2, 1, 1, 1, 1, 1,
                        -3, 5, -128, 127};
    check(mt_conv2d_s8(&p, &q, in, wts, bias, o8), "conv2d"); put(o8, (size_t)(p.out_h * p.out_w * OC));
    mt_conv_params pd = {H, W, C, H, W, C, K, K, 1, 1, 1, 1, 1, 1, C, 7, -2, -128, 127};
    check(mt_depthwise_conv2d_s8(&pd, &q, in, dw, bias, o8), "depthwise"); put(o8, H * W * C);
    mt_conv_params pp = {H, W, C, H, W, OC, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, -1, 0, 127};
    check(mt_pointwise_conv2d_s8(&pp, &q, in, wts, bias, o8), "pointwise"); put(o8, H * W * OC);
    mt_fc_params pf = {H * W * C / 8, OC, 4, -9, -128, 127};
    check(mt_fully_connected_s8(&pf, &q, in, wts, bias, o8), "fc"); put(o8, OC);
    mt_add_params pa = {H * W * C, 3, -4, 1, 20, 1518500250, -1, 1181116006, -2, 1431655765, -18, -128, 127};
    check(mt_add_s8(&pa, in, in2, o8), "add"); put(o8, H * W * C);
    mt_avg_pool_params pg = {H, W, C, 2, -1, 1321528399, -5, -128, 127};
    check(mt_global_avg_pool_s8(&pg, in, o8), "avgpool"); put(o8, C);

    /* fp32 backward + update: the float expressions must agree bit for bit across targets. */
    fill_f32(gout, H * W * OC);
    check(mt_conv2d_grad_input_f32(&p, scale, wts, gout, gin), "grad_input"); put(gin, sizeof gin);
    mt_channels all = {NULL, OC, 0, OC};
    check(mt_conv2d_grad_weight_f32(&p, 0.0123f, in, gout, &all, gw), "grad_weight"); put(gw, sizeof gw);
    check(mt_depthwise_conv2d_grad_input_f32(&pd, scale, dw, gout, gin), "dw_grad_input"); put(gin, sizeof gin);
    fill_f32(logits, 10);
    float loss = 0.0f;
    check(mt_softmax_cross_entropy_f32(logits, 10, 3, &loss, gl), "softmax_ce"); put(&loss, 4); put(gl, sizeof gl);
    for (int r = 0; r < 2; r++) {
        mt_update_params u = {0.37f, r, 42u, 5u, 1u, NULL, 0, 1.0f, NULL, 0.0f};
        check(mt_sgd_update_s8(wts, 0, K * K * C, factor, gw, &all, &u), "sgd_s8"); put(wts, sizeof wts);
        memcpy(bias32, bias, sizeof bias);
        check(mt_sgd_update_s32(bias32, factor, gl, &all, &u), "sgd_s32"); put(bias32, sizeof bias32);
    }
    failures += random_shapes();
    random_block_grads();
    fclose(out);
    printf("kernels done failures %d\n", failures);
    return failures != 0;
}
