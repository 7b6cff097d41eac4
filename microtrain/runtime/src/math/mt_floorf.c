/*
 * mt_floorf: floor(v) in float32, the same bits as C99 floorf, without libm (so the runtime needs
 * nothing of the C library but memcpy/memset); the Python twin is microtrain/runtime/fmath.py
 * floorf. It is the rounding step of every weight update (mt_nn_round: floor(v + 0.5f) or
 * floor(v + u)). +-0, NaN, +-inf and every |v| >= 2^23 are integers already and returned as they
 * are; otherwise the conversion to int32 truncates toward zero, which is the floor unless v is
 * negative and not an integer (then one less). Cores whose FPU has directed rounding (FPv5: the
 * Cortex-M7's, the only M-profile FPU with double precision, and the FPU of any Armv8-M core such
 * as the M33 and M55) use its single VRINTM instruction, the same function.
 */
#include "mt_nn.h"

float mt_floorf(float v)
{
#if defined(__ARM_FP) && (__ARM_FP & 4) && ((__ARM_FP & 8) || __ARM_ARCH >= 8)
    return __builtin_floorf(v);
#else
    float t;
    if (!(v < 8388608.0f && v > -8388608.0f) || v == 0.0f) {
        return v;
    }
    t = (float)(int32_t)v;
    return t > v ? t - 1.0f : t;
#endif
}
