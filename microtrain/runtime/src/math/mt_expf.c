/*
 * mt_expf: e^x in float32 by one fixed sequence of IEEE float32 operations (no libm), so the
 * result is the same bits on every target; the Python twin is microtrain/runtime/fmath.py expf.
 * e^x = 2^k * e^r with k = floor(x * log2(e) + 0.5) and r = (x - k * LN2_HI) - k * LN2_LO
 * (LN2_HI has 12 trailing zero bits, so k * LN2_HI is exact for |k| <= 2^12), |r| <= 0.35;
 * e^r by its Taylor polynomial of degree 7 in Horner form (truncation error < 6e-9 relative);
 * 2^k put into the exponent field; x < -86.5 gives 0 and x > 88.7 infinity. Within 2 ulp of e^x (tests/test_runtime_fmath.py).
 */
#include "mt_nn.h"

float mt_expf(float x)
{
    const float t = x * 1.44269504f + 0.5f;
    int32_t k;
    float kf, r, p, scale;
    uint32_t bits;

    if (x != x) {
        return x;
    }
    if (x < -86.5f) {
        return 0.0f; /* e^x < 2.7e-38: zero, so no subnormal number ever occurs (k >= -125 below) */
    }
    if (x > 88.7f) {
        bits = 0x7F800000u; /* +infinity */
        memcpy(&kf, &bits, sizeof kf);
        return kf;
    }
    k = (int32_t)t; /* truncation toward zero, then down for negative non-integers: floor */
    if ((float)k > t) {
        k -= 1;
    }
    kf = (float)k;
    r = x - kf * 0.693145752f;
    r = r - kf * 1.42860677e-06f;
    p = 1.98412698e-04f;          /* 1/7! */
    p = p * r + 1.38888889e-03f;  /* 1/6! */
    p = p * r + 8.33333333e-03f;  /* 1/5! */
    p = p * r + 4.16666667e-02f;  /* 1/4! */
    p = p * r + 1.66666667e-01f;  /* 1/3! */
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* p * 2^k for k in [-125, 128] as (p * 2) * 2^(k-1): both factors normal, the scaling exact */
    bits = (uint32_t)(k - 1 + 127) << 23;
    memcpy(&scale, &bits, sizeof scale);
    return (p * 2.0f) * scale;
}
