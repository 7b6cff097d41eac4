"""Quantization arithmetic, written once and used by every executor.

Follows the TFLite int8 quantization spec (and gemmlowp's fixed-point helpers):

* A real multiplier ``M > 0`` is represented as ``(multiplier, shift)`` with ``multiplier``
  an int32 in [2^30, 2^31) and ``M ~= multiplier * 2^(shift - 31)``; ``shift > 0`` is a
  left shift. Computed at compile time by ``quantize_multiplier``.
* ``requantize(acc, multiplier, shift)`` = rounding_divide_by_pot(
  saturating_rounding_doubling_high_mul(saturate32(acc * 2^max(shift,0)), multiplier),
  max(-shift, 0)).
* The high multiply adds a nudge (2^30 for a non-negative product, 1 - 2^30 for a negative
  one) and then truncates toward zero, exactly as gemmlowp's C++ does with int64 division:
  positive halves round up (1.5 -> 2) but negative halves round toward zero (-1.5 -> -1).
* The right shift rounds half away from zero.

Deviation from TFLite, stated: TFLite computes ``acc * (1 << left_shift)`` in int32 and
overflow is undefined; here (and in ``mt_requantize.c``) the product is saturated to int32
first, so every executor has a defined, identical result.

All functions take numpy integer arrays (or Python ints) and compute in int64, so the
same code serves scalars and tensors. The C twin is ``runtime/.../mt_requantize.c``;
``tests/`` check the two against each other on boundary values.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier, shift) with real ~= multiplier * 2**(shift - 31); real >= 0."""
    if not math.isfinite(real) or real < 0:
        raise ValueError(f"requantization multiplier must be finite and >= 0, got {real}")
    if real == 0.0:
        return 0, 0
    mantissa, shift = math.frexp(real)  # real = mantissa * 2**shift, mantissa in [0.5, 1)
    q = math.floor(mantissa * (1 << 31) + 0.5)  # std::round: half away from zero (q > 0)
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        # Too small to represent: the product is always 0.
        return 0, 0
    if shift > 30:
        raise ValueError(f"requantization multiplier {real} is too large (>= 2^30)")
    return int(q), int(shift)


def saturate_int32(x: np.ndarray | int) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.int64), INT32_MIN, INT32_MAX)


def _div_trunc(a: np.ndarray, b: int) -> np.ndarray:
    """Integer division truncating toward zero (C semantics), on int64 arrays."""
    q = np.abs(a) // b
    return np.where(a < 0, -q, q)


def saturating_rounding_doubling_high_mul(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values, computed in int64."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b  # |a*b| <= 2^62: fits in int64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    high = _div_trunc(ab + nudge, 1 << 31)
    return np.where(overflow, np.int64(INT32_MAX), high)


def rounding_divide_by_pot(x: np.ndarray | int, exponent: np.ndarray | int) -> np.ndarray:
    """x / 2^exponent rounded half away from zero (gemmlowp RoundingDivideByPOT)."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> exponent) + (remainder > threshold).astype(np.int64)


def requantize(acc: np.ndarray | int, multiplier: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """acc * M in fixed point, M given by ``quantize_multiplier``; int64 result in int32 range."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = saturate_int32(np.asarray(acc, dtype=np.int64) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vector form of ``quantize_multiplier`` (per output channel)."""
    pairs = [quantize_multiplier(float(r)) for r in np.ravel(reals)]
    return (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64))


# --- quantizing real tensors -------------------------------------------------------------

def quantize_weights_per_channel(w: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8: scale = max|w| / 127 per channel, zero point 0.

    Returns (int8 weights, float64 scales). A channel of zeros gets scale 1/127·tiny so that
    the scale stays positive (the verifier requires it) and its weights stay 0.
    """
    w = np.asarray(w, dtype=np.float64)
    reduce_axes = tuple(i for i in range(w.ndim) if i != axis)
    amax = np.max(np.abs(w), axis=reduce_axes)
    scales = np.where(amax > 0, amax / 127.0, 1e-8)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scales.reshape(shape)), -127, 127).astype(np.int8)
    return q, scales


def quantize_bias(b: np.ndarray, input_scale: float, weight_scales: np.ndarray) -> np.ndarray:
    """int32 bias in units of input_scale * weight_scale[c] (TFLite spec), saturated."""
    q = np.round(np.asarray(b, dtype=np.float64) / (input_scale * np.asarray(weight_scales, dtype=np.float64)))
    return np.clip(q, INT32_MIN, INT32_MAX).astype(np.int32)


def choose_activation_qparams(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric int8 (scale, zero point) covering [lo, hi], with 0 exactly representable."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-12:
        return 1.0 / 255.0, -128
    scale = (hi - lo) / 255.0
    zero = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zero


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Real -> int8 with round-half-to-even (numpy's rint) and saturation."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) / scale) + zero_point, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float | np.ndarray, zero_point: int | np.ndarray = 0) -> np.ndarray:
    return (np.asarray(q, dtype=np.float64) - zero_point) * scale
