"""The device's float32 transcendental functions, written once in Python (C twins in
``src/math/``).

libm's ``expf``/``logf``/``cosf`` differ in their last bit between glibc, newlib and numpy, so
a loss or a learning rate computed with them cannot be the same bits on the host, the
Cortex-M and the simulator. These are fixed sequences of IEEE float32 additions,
multiplications and divisions (each correctly rounded everywhere) plus exact bit
manipulation; numpy evaluates the same sequence element-wise, so every function here returns
the C function's bits for any input array. The algorithms and their error bounds are in the C
files' comments; ``tests/test_runtime_fmath.py`` checks both against each other and float64.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def _f(v: float) -> np.float32:
    return np.float32(v)


def expf(x) -> np.ndarray:
    """mt_expf, element-wise."""
    x = np.asarray(x, dtype=F32)
    with np.errstate(over="ignore", invalid="ignore"):
        t = (x * _f(1.44269504) + _f(0.5)).astype(F32)
        k = np.trunc(np.where(np.isfinite(t), t, 0)).astype(np.int64)
        k = k - (k.astype(F32) > t)  # floor
        k = np.clip(k, -125, 128)
        kf = k.astype(F32)
        r = (x - (kf * _f(0.693145752)).astype(F32)).astype(F32)
        r = (r - (kf * _f(1.42860677e-06)).astype(F32)).astype(F32)
        p = np.full_like(r, _f(1.98412698e-04))
        for c in (1.38888889e-03, 8.33333333e-03, 4.16666667e-02, 1.66666667e-01, 0.5, 1.0, 1.0):
            p = ((p * r).astype(F32) + _f(c)).astype(F32)
        scale = ((k - 1 + 127).astype(np.uint32) << np.uint32(23)).view(F32)
        out = ((p * _f(2.0)).astype(F32) * scale).astype(F32)
    out = np.where(x < _f(-86.5), _f(0.0), out)
    out = np.where(x > _f(88.7), _f(np.inf), out)
    return np.where(np.isnan(x), x, out).astype(F32)


def logf(x) -> np.ndarray:
    """mt_logf, element-wise."""
    x = np.asarray(x, dtype=F32)
    bits = x.view(np.uint32)
    sub = (bits < 0x00800000) & (x > 0)
    with np.errstate(over="ignore", invalid="ignore"):
        xs = np.where(sub, (x * _f(8388608.0)).astype(F32), x).astype(F32)
    bits = xs.view(np.uint32).astype(np.int64)
    e = (bits >> 23) - 127 - np.where(sub, 23, 0)
    m = ((bits & 0x007FFFFF) | 0x3F800000).astype(np.uint32).view(F32)
    big = m > _f(1.41421356)
    m = np.where(big, (m * _f(0.5)).astype(F32), m).astype(F32)
    e = e + big
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        s = ((m - _f(1.0)).astype(F32) / (m + _f(1.0)).astype(F32)).astype(F32)
        z = (s * s).astype(F32)
        r = np.full_like(s, _f(2.22222222e-01))
        for c in (2.85714286e-01, 4.00000000e-01, 6.66666667e-01):
            r = ((r * z).astype(F32) + _f(c)).astype(F32)
        r = ((s + s).astype(F32) + ((s * z).astype(F32) * r).astype(F32)).astype(F32)
        ef = e.astype(F32)
        out = ((ef * _f(0.693145752)).astype(F32) + (r + (ef * _f(1.42860677e-06)).astype(F32)).astype(F32)).astype(F32)
    out = np.where(np.isposinf(x), x, out)
    out = np.where(x == 0, _f(-np.inf), out)
    return np.where(np.isnan(x) | (x < 0), _f(np.nan), out).astype(F32)


def floorf(v) -> np.ndarray:
    """mt_floorf, element-wise: truncation toward zero through int32, one less for a negative
    non-integer; +-0, NaN, +-inf and |v| >= 2^23 unchanged (the bits of C99 floorf)."""
    v = np.asarray(v, dtype=F32)
    small = (v < _f(8388608.0)) & (v > _f(-8388608.0)) & (v != 0)
    t = np.where(small, v, _f(0.0)).astype(np.int32).astype(F32)
    t = np.where(t > v, (t - _f(1.0)).astype(F32), t).astype(F32)
    return np.where(small, t, v).astype(F32)


def cos_pi(u) -> np.ndarray:
    """mt_cos_pi: cos(pi * u), u clamped to [0, 1], element-wise."""
    u = np.asarray(u, dtype=F32)
    uc = np.clip(u, _f(0.0), _f(1.0)).astype(F32)
    upper = uc > _f(0.5)
    v = np.where(upper, (_f(1.0) - uc).astype(F32), uc).astype(F32)
    z = (v * _f(3.14159265)).astype(F32)
    z2 = (z * z).astype(F32)
    p = np.full_like(z2, _f(2.08767570e-09))
    for c in (-2.75573192e-07, 2.48015873e-05, -1.38888889e-03, 4.16666667e-02, -0.5):
        p = ((p * z2).astype(F32) + _f(c)).astype(F32)
    c = (_f(1.0) + (z2 * p).astype(F32)).astype(F32)
    out = np.where(upper, -c, c).astype(F32)
    return np.where(np.isnan(u), u, out).astype(F32)
