/*
 * mt_logf: natural logarithm in float32 by one fixed sequence of IEEE float32 operations (no
 * libm), the same bits on every target; the Python twin is microtrain/runtime/fmath.py logf.
 * x = m * 2^e with m in [sqrt(2)/2, sqrt(2)) (from the bits; subnormals scaled by 2^23 first);
 * s = (m - 1) / (m + 1), z = s * s, |s| < 0.1716;
 * log(m) = 2s + s * z * (2/3 + z * (2/5 + z * (2/7 + z * 2/9)))  (atanh series, error < 1e-9);
 * log(x) = e * LN2_HI + (log(m) + e * LN2_LO). Within 2 ulp of log(x) (tests/test_runtime_fmath.py).
 * x < 0 or NaN gives NaN, 0 gives -infinity, +infinity gives +infinity.
 */
#include "mt_nn.h"

float mt_logf(float x)
{
    uint32_t bits;
    int32_t e;
    float m, s, z, r, ef, out;

    memcpy(&bits, &x, sizeof bits);
    if (x != x || x < 0.0f) {
        bits = 0x7FC00000u; /* NaN */
        memcpy(&out, &bits, sizeof out);
        return out;
    }
    if (x == 0.0f) {
        bits = 0xFF800000u; /* -infinity */
        memcpy(&out, &bits, sizeof out);
        return out;
    }
    if (bits >= 0x7F800000u) {
        return x; /* +infinity */
    }
    e = 0;
    if (bits < 0x00800000u) { /* subnormal: scale into the normal range (exact) */
        x = x * 8388608.0f;
        memcpy(&bits, &x, sizeof bits);
        e = -23;
    }
    e += (int32_t)(bits >> 23) - 127;
    bits = (bits & 0x007FFFFFu) | 0x3F800000u; /* m in [1, 2) */
    memcpy(&m, &bits, sizeof m);
    if (m > 1.41421356f) {
        m = m * 0.5f;
        e += 1;
    }
    s = (m - 1.0f) / (m + 1.0f);
    z = s * s;
    r = 2.22222222e-01f;          /* 2/9 */
    r = r * z + 2.85714286e-01f;  /* 2/7 */
    r = r * z + 4.00000000e-01f;  /* 2/5 */
    r = r * z + 6.66666667e-01f;  /* 2/3 */
    r = (s + s) + (s * z) * r;
    ef = (float)e;
    return ef * 0.693145752f + (r + ef * 1.42860677e-06f);
}
