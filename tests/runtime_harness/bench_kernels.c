/*
 * bench_kernels.c: runs the hot runtime kernels once each on the shapes of a late
 * MobileNetV2-w0.35 inverted-residual block at 128x128 input (4x4 spatial, 56 -> 336 -> 56
 * channels, 3x3 depthwise), for instruction counts under valgrind --tool=callgrind:
 *
 *   gcc -std=c99 -O2 -ffp-contract=off -Imicrotrain/runtime/include \
 *       tests/runtime_harness/bench_kernels.c microtrain/runtime/src/\*\/\*.c -lm -o /tmp/bench
 *   valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out /tmp/bench
 *   callgrind_annotate --inclusive=yes /tmp/cg.out | grep mt_
 *
 * Inputs are deterministic pseudo-random bytes; the checksum printed keeps the compiler
 * from removing the work. Not a test: numbers only, read by a person.
 */
#include <stdio.h>

#include "mt_runtime.h"

#define HW 16
#define C_IN 56
#define C_MID 336

static int8_t x_in[HW * C_IN], x_mid[HW * C_MID], x_dw[HW * C_MID], y_out[HW * C_IN];
static int8_t w_pw1[C_MID * C_IN], w_dw[C_MID * 9], w_pw2[C_IN * C_MID];
static int32_t bias[C_MID], mult[C_MID], shift[C_MID];
static float scale_w[C_MID], factor[C_MID], g_out[HW * C_MID], g_in[HW * C_MID], g_w[C_MID * C_MID];
static int32_t kept[C_MID];

static uint32_t state = 12345u;
static int8_t next_byte(void)
{
    state = state * 1664525u + 1013904223u;
    return (int8_t)(state >> 24);
}

int main(void)
{
    int32_t i;
    long checksum = 0;
    mt_conv_params pw1 = {4, 4, C_IN, 4, 4, C_MID, 1, 1, 1, 1, 0, 0, 0, 0, 1, -3, -128, -128, 127};
    mt_conv_params dw = {4, 4, C_MID, 4, 4, C_MID, 3, 3, 1, 1, 1, 1, 1, 1, C_MID, -128, -128, -128, 127};
    mt_conv_params pw2 = {4, 4, C_MID, 4, 4, C_IN, 1, 1, 1, 1, 0, 0, 0, 0, 1, -128, 5, -128, 127};
    mt_per_channel_quant q = {mult, shift, NULL};
    mt_channels all_mid = {NULL, C_MID, 0, C_MID};
    mt_channels all_out = {NULL, C_IN, 0, C_IN};
    mt_channels one = {kept, C_MID, 0, 1};
    mt_update_params up = {0.01f, MT_ROUND_STOCHASTIC, 1u, 0u, 0u, NULL, 0, 1.0f, NULL, 0.0f};

    for (i = 0; i < HW * C_IN; ++i) x_in[i] = next_byte();
    for (i = 0; i < C_MID * C_IN; ++i) { w_pw1[i] = next_byte(); w_pw2[i] = next_byte(); }
    for (i = 0; i < C_MID * 9; ++i) w_dw[i] = next_byte();
    for (i = 0; i < C_MID; ++i) {
        bias[i] = (int32_t)next_byte() * 100; mult[i] = 1518500250; shift[i] = -9;
        scale_w[i] = 0.01f; factor[i] = 100.0f; kept[i] = i;
    }
    for (i = 0; i < HW * C_MID; ++i) g_out[i] = (float)next_byte() * 0.001f;

    /* forward */
    checksum += mt_pointwise_conv2d_s8(&pw1, &q, x_in, w_pw1, bias, x_mid);
    checksum += mt_conv2d_s8(&pw1, &q, x_in, w_pw1, bias, x_mid);
    checksum += mt_depthwise_conv2d_s8(&dw, &q, x_mid, w_dw, bias, x_dw);
    checksum += mt_pointwise_conv2d_s8(&pw2, &q, x_dw, w_pw2, bias, y_out);
    /* backward through pointwise2 (output grad over C_IN channels) */
    checksum += mt_conv2d_grad_input_f32(&pw2, scale_w, w_pw2, g_out, g_in);
    checksum += mt_conv2d_grad_weight_f32(&pw2, 0.02f, x_dw, g_out, &all_out, g_w);
    checksum += mt_pointwise_conv2d_grad_input_f32(&pw2, scale_w, w_pw2, g_out, g_in);
    checksum += mt_pointwise_conv2d_grad_weight_f32(&pw2, 0.02f, x_dw, g_out, &all_out, g_w);
    checksum += mt_sgd_update_s8(w_pw2, 0, C_MID, factor, g_w, &all_out, &up);
    /* depthwise */
    checksum += mt_depthwise_conv2d_grad_input_f32(&dw, scale_w, w_dw, g_out, g_in);
    checksum += mt_depthwise_conv2d_grad_weight_f32(&dw, 0.02f, x_mid, 0, g_out, &all_mid, g_w);
    /* pointwise1 weight gradient, one channel (the reordered per-channel step) */
    checksum += mt_conv2d_grad_weight_f32(&pw1, 0.02f, x_in, g_out, &one, g_w);
    checksum += mt_sgd_update_s8(w_pw1, 0, C_IN, factor, g_w, &one, &up);
    checksum += mt_bias_grad_f32(g_out, HW, C_MID, &all_mid, g_w);
    for (i = 0; i < HW * C_IN; ++i) checksum += y_out[i] + (long)(g_in[i] * 1000.0f) + (long)(g_w[i] * 100.0f);
    printf("checksum %ld\n", checksum);
    return 0;
}
