/*
 * kernel_suite.c: runs every runtime kernel on fixed pseudo-random data and writes the
 * results to mt_kernels_out.bin (the loss included: its mt_expf/mt_logf are libm-free, the
 * same bits everywhere). Built twice by tests/test_runtime_target.py, with gcc for the host and
 * with arm-none-eabi-gcc for Cortex-M7 (run on QEMU through semihosting): the two files must
 * be identical byte for byte, which shows the kernels compute the same bits on the target
 * as on the host (where the other tests check them against the reference and torch).
 *
 * stdout: one line "section <name> <offset> <bytes>" per result, so a mismatch can be named;
 * with MT_COUNT_INSTRUCTIONS (target build), "cost <name> <instructions>" per kernel call.
 * Shapes: a late MobileNetV2-w0.35 block (4x4, 56 -> 336 -> 56) plus small odd cases
 * (stride 2, asymmetric padding, groups, 5x5 depthwise).
 */
#include <stdio.h>
#include <string.h>

#include "mt_runtime.h"

#ifdef MT_COUNT_INSTRUCTIONS
extern uint64_t mt_target_instructions(void);
#define MT_T0() uint64_t t0_ = mt_target_instructions()
#define MT_COST(name) printf("cost %s %lu\n", name, (unsigned long)(mt_target_instructions() - t0_))
#else
#define MT_T0() (void)0
#define MT_COST(name) (void)0
#endif

#define HW 16
#define C_IN 56
#define C_MID 336

static FILE *out_main;
static long offset_main;
static int failures;

static void emit(FILE *f, long *offset, const char *name, const void *data, size_t bytes)
{
    fwrite(data, 1, bytes, f);
    printf("section %s %ld %lu\n", name, *offset, (unsigned long)bytes);
    *offset += (long)bytes;
}
#define EMIT(name, ptr, bytes) emit(out_main, &offset_main, name, ptr, bytes)

static void check(mt_status st, const char *name)
{
    if (st != MT_OK) {
        printf("error %s status %d\n", name, (int)st);
        ++failures;
    }
}

static uint32_t lcg = 2463534242u;
static uint32_t next_u32(void)
{
    lcg = lcg * 1664525u + 1013904223u;
    return lcg;
}
static int8_t next_i8(void) { return (int8_t)(next_u32() >> 24); }
static int8_t next_w8(void) { int8_t v = next_i8(); return v == -128 ? (int8_t)-127 : v; }
/* uniform in [-1, 1) with 24-bit resolution (exact in float32) */
static float next_f32(void) { return (float)(int32_t)(next_u32() >> 8) / 8388608.0f - 1.0f; }

static int8_t x_in[HW * C_IN], x_mid[HW * C_MID], x_dw[HW * C_MID], y_out[HW * C_IN], y_add[HW * C_IN];
static int8_t w_pw1[C_MID * C_IN], w_dw[C_MID * 9], w_pw2[C_IN * C_MID];
static int32_t bias[C_MID], mult[C_MID], shift[C_MID];
static float scale_w[C_MID], factor[C_MID], g_mid[HW * C_MID], g_out[HW * C_IN], g_in[HW * C_MID];
static float g_w[C_MID * C_IN];
static int8_t sliced[HW * C_MID];
static uint8_t mask[(HW * C_MID + 7) / 8];

static void block_cases(void)
{
    mt_conv_params pw1 = {4, 4, C_IN, 4, 4, C_MID, 1, 1, 1, 1, 0, 0, 0, 0, 1, -3, -128, -128, 127};
    mt_conv_params dw = {4, 4, C_MID, 4, 4, C_MID, 3, 3, 1, 1, 1, 1, 1, 1, C_MID, -128, -128, -128, 127};
    mt_conv_params pw2 = {4, 4, C_MID, 4, 4, C_IN, 1, 1, 1, 1, 0, 0, 0, 0, 1, -128, 5, -128, 127};
    mt_per_channel_quant q = {mult, shift, NULL};
    mt_add_params ap = {HW * C_IN, 5, -3, 2, 20, 1518500250, -1, 1073741824, 0, 1431655765, -9, -128, 127};
    mt_avg_pool_params pp = {4, 4, C_IN, 2, -7, 1717986918, -3, -128, 127};
    int32_t kept_mid[84], kept_out[14], i;
    mt_channels all_out = {NULL, C_IN, 0, C_IN};
    mt_channels some_mid = {kept_mid, 84, 0, 84};
    mt_channels some_out = {kept_out, 14, 0, 14};
    static float acc[2 * C_MID], mom[2 * C_MID];
    mt_channels two_out = {kept_out, 2, 0, 2};
    mt_update_params up_s = {0.01f, MT_ROUND_STOCHASTIC, 7u, 3u, 2u, NULL, 0, 1.0f, NULL, 0.0f};
    mt_update_params up_n = {0.05f, MT_ROUND_NEAREST, 0u, 0u, 0u, NULL, 0, 1.0f, NULL, 0.0f};
    mt_update_params up_am = {0.02f, MT_ROUND_STOCHASTIC, 9u, 4u, 1u, acc, 0, 1.0f / 3.0f, mom, 0.9f};
    int8_t y_pool[C_IN];
    float logits[10], loss;

    for (i = 0; i < 84; ++i) kept_mid[i] = 4 * i + 1;
    for (i = 0; i < 14; ++i) kept_out[i] = 4 * i + 3;

    /* forward */
    { MT_T0(); check(mt_pointwise_conv2d_s8(&pw1, &q, x_in, w_pw1, bias, x_mid), "pw1"); MT_COST("mt_pointwise_conv2d_s8 4x4 56->336"); }
    EMIT("pointwise_s8", x_mid, sizeof x_mid);
    { MT_T0(); check(mt_conv2d_s8(&pw1, &q, x_in, w_pw1, bias, x_mid), "conv pw1"); MT_COST("mt_conv2d_s8 4x4 56->336 (1x1)"); }
    EMIT("conv2d_s8_1x1", x_mid, sizeof x_mid);
    { MT_T0(); check(mt_depthwise_conv2d_s8(&dw, &q, x_mid, w_dw, bias, x_dw), "dw"); MT_COST("mt_depthwise_conv2d_s8 4x4x336 3x3"); }
    EMIT("depthwise_s8", x_dw, sizeof x_dw);
    { MT_T0(); check(mt_pointwise_conv2d_s8(&pw2, &q, x_dw, w_pw2, bias, y_out), "pw2"); MT_COST("mt_pointwise_conv2d_s8 4x4 336->56"); }
    EMIT("pointwise_s8_2", y_out, sizeof y_out);
    { MT_T0(); check(mt_add_s8(&ap, y_out, x_in, y_add), "add"); MT_COST("mt_add_s8 896"); }
    EMIT("add_s8", y_add, sizeof y_add);
    { MT_T0(); check(mt_global_avg_pool_s8(&pp, y_add, y_pool), "pool"); MT_COST("mt_global_avg_pool_s8 4x4x56"); }
    EMIT("avg_pool_s8", y_pool, sizeof y_pool);

    /* backward of pointwise2 and depthwise, updates of kept channels */
    { MT_T0(); check(mt_conv2d_grad_input_f32(&pw2, scale_w, w_pw2, g_out, g_in), "gi pw2"); MT_COST("mt_conv2d_grad_input_f32 4x4 336<-56 (1x1)"); }
    EMIT("conv_grad_input_1x1", g_in, sizeof g_in);
    { MT_T0(); check(mt_pointwise_conv2d_grad_input_f32(&pw2, scale_w, w_pw2, g_out, g_in), "pgi pw2"); MT_COST("mt_pointwise_conv2d_grad_input_f32 4x4 336<-56"); }
    EMIT("pointwise_grad_input", g_in, sizeof g_in);
    { MT_T0(); check(mt_conv2d_grad_weight_f32(&pw2, 0.02f, x_dw, g_out, &some_out, g_w), "gw pw2"); MT_COST("mt_conv2d_grad_weight_f32 1x1 336 x 14 channels"); }
    EMIT("conv_grad_weight_1x1", g_w, 14 * C_MID * sizeof(float));
    { MT_T0(); check(mt_pointwise_conv2d_grad_weight_f32(&pw2, 0.02f, x_dw, g_out, &some_out, g_w), "pgw pw2"); MT_COST("mt_pointwise_conv2d_grad_weight_f32 336 x 14 channels"); }
    EMIT("pointwise_grad_weight", g_w, 14 * C_MID * sizeof(float));
    { MT_T0(); check(mt_sgd_update_s8(w_pw2, 0, C_MID, factor, g_w, &some_out, &up_s), "upd pw2"); MT_COST("mt_sgd_update_s8 stochastic 14 x 336"); }
    EMIT("sgd_update_s8_stochastic", w_pw2, sizeof w_pw2);
    { MT_T0(); check(mt_sgd_update_s8(w_pw2, 0, C_MID, factor, g_w, &some_out, &up_n), "upd pw2 n"); MT_COST("mt_sgd_update_s8 nearest 14 x 336"); }
    EMIT("sgd_update_s8_nearest", w_pw2, sizeof w_pw2);
    /* accumulation over 3 samples (two accumulate-only calls, then the update) with momentum, twice */
    for (i = 0; i < 6; ++i) {
        up_am.apply = i % 3 == 2;
        up_am.step = 4u + (uint32_t)(i / 3);
        check(mt_sgd_update_s8(w_pw2, 0, C_MID, factor, g_w, &two_out, &up_am), "upd accum momentum");
    }
    EMIT("sgd_update_s8_accum_momentum", w_pw2, sizeof w_pw2);
    EMIT("sgd_update_state", acc, sizeof acc);
    EMIT("sgd_update_momentum", mom, sizeof mom);
    { MT_T0(); check(mt_bias_grad_f32(g_out, HW, C_IN, &all_out, g_w), "bias grad"); MT_COST("mt_bias_grad_f32 16 x 56"); }
    EMIT("bias_grad", g_w, C_IN * sizeof(float));
    { MT_T0(); check(mt_sgd_update_s32(bias, factor, g_w, &all_out, &up_s), "upd bias"); MT_COST("mt_sgd_update_s32 56"); }
    EMIT("sgd_update_s32", bias, C_IN * sizeof(int32_t));
    { MT_T0(); check(mt_clamp_mask_s8(x_dw, HW * C_MID, -128, 100, mask), "mask"); MT_COST("mt_clamp_mask_s8 5376"); }
    EMIT("clamp_mask", mask, sizeof mask);
    { MT_T0(); check(mt_apply_mask_f32(g_mid, mask, HW * C_MID, g_mid), "apply"); MT_COST("mt_apply_mask_f32 5376"); }
    EMIT("apply_mask", g_mid, sizeof g_mid);
    { MT_T0(); check(mt_depthwise_conv2d_grad_input_f32(&dw, scale_w, w_dw, g_mid, g_in), "dw gi"); MT_COST("mt_depthwise_conv2d_grad_input_f32 4x4x336 3x3"); }
    EMIT("depthwise_grad_input", g_in, sizeof g_in);
    check(mt_gather_channels_s8(x_mid, HW, C_MID, &some_mid, sliced), "gather");
    EMIT("gather_channels", sliced, HW * 84);
    { MT_T0(); check(mt_depthwise_conv2d_grad_weight_f32(&dw, 0.03f, sliced, 1, g_mid, &some_mid, g_w), "dw gw"); MT_COST("mt_depthwise_conv2d_grad_weight_f32 3x3 x 84 channels"); }
    EMIT("depthwise_grad_weight", g_w, 84 * 9 * sizeof(float));
    check(mt_sgd_update_s8(w_dw, 0, 9, factor, g_w, &some_mid, &up_s), "upd dw");
    EMIT("sgd_update_dw", w_dw, sizeof w_dw);
    { MT_T0(); check(mt_pointwise_conv2d_grad_input_f32(&pw1, scale_w, w_pw1, g_in, g_out), "pw1 gi"); MT_COST("mt_pointwise_conv2d_grad_input_f32 4x4 56<-336"); }
    EMIT("pointwise_grad_input_2", g_out, sizeof g_out);
    { MT_T0(); check(mt_pointwise_conv2d_grad_weight_f32(&pw1, 0.02f, x_in, g_in, &some_mid, g_w), "pw1 gw"); MT_COST("mt_pointwise_conv2d_grad_weight_f32 56 x 84 channels"); }
    EMIT("pointwise_grad_weight_2", g_w, 84 * C_IN * sizeof(float));

    /* the loss */
    check(mt_dequantize_s8_f32(y_pool, 10, 0.137f, -7, logits), "deq");
    EMIT("dequantize", logits, sizeof logits);
    { MT_T0(); check(mt_softmax_cross_entropy_f32(logits, 10, 3, &loss, logits), "ce"); MT_COST("mt_softmax_cross_entropy_f32 10"); }
    EMIT("softmax_grad", logits, sizeof logits);
    EMIT("softmax_loss", &loss, sizeof loss);
}

/* the libm-free float functions and the learning-rate schedule over their whole useful ranges */
static void math_cases(void)
{
    static float ex[2048], lg[2048], cs[512], lr[600], fl[1024];
    const mt_lr_schedule cosine = {MT_LR_COSINE, 0.05f, 37, 590};
    const mt_lr_schedule constant = {MT_LR_CONSTANT, 0.003f, 0, 0};
    int32_t i;
    uint32_t bits;
    float v;

    for (i = 0; i < 2048; ++i) {
        ex[i] = mt_expf(-90.0f + (float)i * (180.0f / 2047.0f) + next_f32() * 0.01f);
        bits = 0x00000100u + (next_u32() % 0x7F000000u); /* positive: subnormal to huge */
        memcpy(&v, &bits, sizeof v);
        lg[i] = mt_logf(i < 1024 ? v : 1.0f + (float)i * 0.01f);
    }
    EMIT("mt_expf", ex, sizeof ex);
    EMIT("mt_logf", lg, sizeof lg);
    for (i = 0; i < 512; ++i) {
        cs[i] = mt_cos_pi((float)i / 511.0f);
    }
    EMIT("mt_cos_pi", cs, sizeof cs);
    for (i = 0; i < 600; ++i) {
        lr[i] = mt_learning_rate(i < 595 ? &cosine : &constant, (uint32_t)i);
    }
    EMIT("mt_learning_rate", lr, sizeof lr);
    for (i = 0; i < 1024; ++i) { /* halves and integers around 0, random values, then huge ones */
        v = i < 256 ? (float)(i - 128) * 0.5f : (next_f32() - 0.5f) * (i < 1000 ? 600.0f : 3.0e7f);
        fl[i] = mt_floorf(i == 1023 ? -0.0f : v);
    }
    EMIT("mt_floorf", fl, sizeof fl);
}

static void small_cases(void)
{
    /* general conv: 9x9x6 -> 5x4x8, 3x3, stride 2, padding (1, 0, 1, 1), 2 groups */
    static int8_t x[9 * 9 * 6], w[8 * 3 * 3 * 3], y[5 * 4 * 8], w_fc[10 * 100], y_fc[10], x_fc[100];
    static float gy[5 * 4 * 8], gx[9 * 9 * 12], gw[8 * 27], g_fc[10], gx_fc[100], gw_fc[10 * 100];
    static int8_t xd[9 * 9 * 12], yd[5 * 5 * 12], wd[12 * 25];
    static float gyd[5 * 5 * 12];
    int32_t kept[3] = {1, 4, 7}, i;
    int32_t req[256];
    mt_conv_params cp = {9, 9, 6, 5, 4, 8, 3, 3, 2, 2, 1, 0, 1, 1, 2, 17, -9, -100, 90};
    mt_conv_params dp = {9, 9, 12, 5, 5, 12, 5, 5, 2, 2, 2, 2, 2, 2, 12, 127, -128, -128, 127};
    mt_fc_params fp = {100, 10, -128, 3, -128, 127};
    mt_per_channel_quant q = {mult, shift, NULL};
    mt_channels ch = {kept, 3, 0, 3};
    mt_channels all10 = {NULL, 10, 0, 10};

    for (i = 0; i < (int32_t)sizeof x; ++i) x[i] = next_i8();
    for (i = 0; i < (int32_t)sizeof w; ++i) w[i] = next_w8();
    for (i = 0; i < (int32_t)sizeof xd; ++i) xd[i] = next_i8();
    for (i = 0; i < (int32_t)sizeof wd; ++i) wd[i] = next_w8();
    for (i = 0; i < (int32_t)sizeof w_fc; ++i) w_fc[i] = next_w8();
    for (i = 0; i < (int32_t)sizeof x_fc; ++i) x_fc[i] = next_i8();
    for (i = 0; i < 5 * 4 * 8; ++i) gy[i] = next_f32();
    for (i = 0; i < 5 * 5 * 12; ++i) gyd[i] = next_f32();
    for (i = 0; i < 10; ++i) g_fc[i] = next_f32();

    check(mt_conv2d_s8(&cp, &q, x, w, bias, y), "conv");
    EMIT("conv2d_s8_s2_g2", y, sizeof y);
    check(mt_depthwise_conv2d_s8(&dp, &q, xd, wd, bias, yd), "dw5");
    EMIT("depthwise_s8_5x5_s2", yd, sizeof yd);
    check(mt_fully_connected_s8(&fp, &q, x_fc, w_fc, bias, y_fc), "fc");
    EMIT("fully_connected_s8", y_fc, sizeof y_fc);
    check(mt_conv2d_grad_input_f32(&cp, scale_w, w, gy, gx), "conv gi");
    EMIT("conv_grad_input_s2_g2", gx, 9 * 9 * 6 * sizeof(float));
    check(mt_conv2d_grad_weight_f32(&cp, 0.05f, x, gy, &ch, gw), "conv gw");
    EMIT("conv_grad_weight_s2_g2", gw, 3 * 27 * sizeof(float));
    check(mt_depthwise_conv2d_grad_input_f32(&dp, scale_w, wd, gyd, gx), "dw5 gi");
    EMIT("depthwise_grad_input_5x5_s2", gx, sizeof gx);
    check(mt_depthwise_conv2d_grad_weight_f32(&dp, 0.05f, xd, 0, gyd, &ch, gw), "dw5 gw");
    EMIT("depthwise_grad_weight_5x5_s2", gw, 3 * 25 * sizeof(float));
    check(mt_fully_connected_grad_input_f32(&fp, scale_w, w_fc, g_fc, gx_fc), "fc gi");
    EMIT("fc_grad_input", gx_fc, sizeof gx_fc);
    check(mt_fully_connected_grad_weight_f32(&fp, 0.01f, x_fc, g_fc, &all10, gw_fc), "fc gw");
    EMIT("fc_grad_weight", gw_fc, sizeof gw_fc);
    check(mt_global_avg_pool_grad_f32(3, 7, 10, g_fc, gx), "pool grad");
    EMIT("avg_pool_grad", gx, 3 * 7 * 10 * sizeof(float));
    for (i = 0; i < 256; ++i) {
        /* separate statements: the order of evaluation of arguments is unspecified */
        const int32_t acc = (int32_t)next_u32();
        const int32_t m = (int32_t)(next_u32() >> 1) | 0x40000000;
        req[i] = mt_requantize(i < 8 ? (i & 1 ? INT32_MIN : INT32_MAX) : acc, m, (i % 62) - 31);
    }
    EMIT("requantize", req, sizeof req);
}

/* The window and copy ops of imported .tflite models: overhanging pool windows (3x2 filter,
 * stride 2x1, 1-pixel top/left padding on a 7x5 image), PAD, CONCAT parts, SOFTMAX, gradients. */
static void window_cases(void)
{
    static int8_t x[7 * 5 * 6], yp[4 * 5 * 6], ypad[10 * 7 * 8], ycat[7 * 5 * 12], ysm[2 * 12], logits_s8[2 * 12];
    static float g[4 * 5 * 6], gx[7 * 5 * 6], gpad[10 * 7 * 8], gcat[7 * 5 * 12];
    const mt_pool_params pp = {7, 5, 6, 4, 5, 3, 2, 2, 1, 1, 1, -100, 120, 0};
    const mt_pad_params pd = {7, 5, 6, 1, 2, 0, 2, 1, 1, -7};
    const mt_concat_params c0 = {35, 6, 12, 0}, c1 = {35, 6, 12, 6};
    const mt_softmax_params sm = {2, 12, 1717986918, 4, -248};
    int32_t i;
    for (i = 0; i < 7 * 5 * 6; ++i) x[i] = (int8_t)(next_i8() / 8);  /* a narrow range: ties for the max */
    for (i = 0; i < 4 * 5 * 6; ++i) g[i] = next_f32();
    for (i = 0; i < 10 * 7 * 8; ++i) gpad[i] = next_f32();
    for (i = 0; i < 7 * 5 * 12; ++i) gcat[i] = next_f32();
    for (i = 0; i < 2 * 12; ++i) logits_s8[i] = next_i8();
    MT_T0();
    check(mt_avg_pool2d_s8(&pp, x, yp), "avg_pool2d_s8");
    MT_COST("avg_pool2d_s8");
    EMIT("avg_pool2d_s8", yp, sizeof yp);
    check(mt_max_pool2d_s8(&pp, x, yp), "max_pool2d_s8");
    EMIT("max_pool2d_s8", yp, sizeof yp);
    check(mt_pad_s8(&pd, x, ypad), "pad_s8");
    EMIT("pad_s8", ypad, sizeof ypad);
    check(mt_concat_part_s8(&c0, x, ycat), "concat_part_s8");
    check(mt_concat_part_s8(&c1, x, ycat), "concat_part_s8_2");
    EMIT("concat_part_s8", ycat, sizeof ycat);
    check(mt_softmax_s8(&sm, logits_s8, ysm), "softmax_s8");
    EMIT("softmax_s8", ysm, sizeof ysm);
    check(mt_avg_pool2d_grad_f32(&pp, g, gx), "avg_pool2d_grad_f32");
    EMIT("avg_pool2d_grad_f32", gx, sizeof gx);
    check(mt_max_pool2d_grad_f32(&pp, x, g, gx), "max_pool2d_grad_f32");
    EMIT("max_pool2d_grad_f32", gx, sizeof gx);
    check(mt_pad_grad_f32(&pd, gpad, gx), "pad_grad_f32");
    EMIT("pad_grad_f32", gx, sizeof gx);
    check(mt_concat_part_grad_f32(&c1, gcat, gx), "concat_part_grad_f32");
    EMIT("concat_part_grad_f32", gx, sizeof gx);
}

int main(void)
{
    int32_t i;
    out_main = fopen("mt_kernels_out.bin", "wb");
    if (out_main == NULL) {
        printf("error cannot open output files\n");
        return 1;
    }
    for (i = 0; i < HW * C_IN; ++i) x_in[i] = next_i8();
    for (i = 0; i < C_MID * C_IN; ++i) { w_pw1[i] = next_w8(); w_pw2[i] = next_w8(); }
    for (i = 0; i < C_MID * 9; ++i) w_dw[i] = next_w8();
    for (i = 0; i < C_MID; ++i) {
        bias[i] = (int32_t)next_i8() * 997;
        mult[i] = (int32_t)(next_u32() >> 2) | 0x40000000;
        shift[i] = -8 - (int32_t)(next_u32() % 4u);
        scale_w[i] = 0.001f + (float)(next_u32() >> 12) * 1e-8f;
        factor[i] = 1.0f / scale_w[i];
    }
    for (i = 0; i < HW * C_MID; ++i) g_mid[i] = next_f32();
    for (i = 0; i < HW * C_IN; ++i) g_out[i] = next_f32() * 0.1f;
    block_cases();
    small_cases();
    math_cases();
    window_cases();
    fclose(out_main);
    printf("done failures %d\n", failures);
    return failures != 0;
}
