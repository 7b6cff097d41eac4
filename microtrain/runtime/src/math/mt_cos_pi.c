/*
 * mt_cos_pi: cos(pi * u) for u in [0, 1] (clamped to it) in float32 by one fixed sequence of
 * IEEE float32 operations (no libm), the same bits on every target; the Python twin is
 * microtrain/runtime/fmath.py cos_pi. It is the shape of the cosine learning-rate schedule.
 * For u > 0.5, cos(pi u) = -cos(pi (1 - u)) (1 - u is exact there), so z = pi * v with v in
 * [0, 0.5]; cos(z) = 1 + z^2 * P(z^2), P the Taylor polynomial of degree 5 in z^2 (error
 * < 7e-9 for z <= pi/2). Exact at the ends: cos_pi(0) = 1, cos_pi(1) = -1. Within 2e-7.
 */
#include "mt_nn.h"

float mt_cos_pi(float u)
{
    float v, z, z2, p, c;

    if (u != u) {
        return u;
    }
    u = u < 0.0f ? 0.0f : u > 1.0f ? 1.0f : u;
    v = u > 0.5f ? 1.0f - u : u;
    z = v * 3.14159265f;
    z2 = z * z;
    p = 2.08767570e-09f;          /* 1/12! */
    p = p * z2 - 2.75573192e-07f; /* -1/10! */
    p = p * z2 + 2.48015873e-05f; /* 1/8! */
    p = p * z2 - 1.38888889e-03f; /* -1/6! */
    p = p * z2 + 4.16666667e-02f; /* 1/4! */
    p = p * z2 - 0.5f;
    c = 1.0f + z2 * p;
    return u > 0.5f ? -c : c;
}
