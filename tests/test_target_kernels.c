/*
 * Cross-target check of the microtrain runtime: the same deterministic inputs through int8
 * forward, fp32 backward and update kernels, every output appended to out.bin. Built with
 * host gcc and with arm-none-eabi-gcc (run on QEMU mps2-an500); tests/test_target_kernels.py
 * compares the two files byte for byte. Only stdio, so it runs unchanged on both.
 */
#include <stdio.h>
#include <string.h>

#include "mt_runtime.h"

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
    mt_per_channel_quant q = {mult, shift};

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
        mt_update_params u = {0.37f, r, 42u, 5u, 1u};
        check(mt_sgd_update_s8(wts, 0, K * K * C, factor, gw, &all, &u), "sgd_s8"); put(wts, sizeof wts);
        memcpy(bias32, bias, sizeof bias);
        check(mt_sgd_update_s32(bias32, factor, gl, &all, &u), "sgd_s32"); put(bias32, sizeof bias32);
    }
    fclose(out);
    printf("kernels done failures %d\n", failures);
    return failures != 0;
}
