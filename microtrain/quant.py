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


# --- TFLite Micro's compile-time rules (its kernels' Prepare functions) ---------------------

def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """std::round / TfLiteRound: halves away from zero (numpy's rint rounds them to even).

    Computed in float64, where ``|x| + 0.5`` is exact for every float32 ``x`` (in float32,
    0.49999997 + 0.5 would round up to 1.0 and give 1 where std::round gives 0).
    """
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def tflm_activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLM's CalculateActivationRangeQuantized for int8: the clamp of a fused activation.

    The bound of RELU6 (and RELU_N1_TO_1) is quantized in float32, as TFLM does:
    ``zero_point + round(6.0f / scale)`` with ``scale`` the float32 tensor scale.
    """
    def q(real: float) -> int:
        return int(zero_point) + int(round_half_away(np.float32(real) / np.float32(scale)))
    if activation == "NONE":
        return -128, 127
    if activation == "RELU":
        return max(-128, q(0.0)), 127
    if activation == "RELU6":
        return max(-128, q(0.0)), min(127, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(-128, q(-1.0)), min(127, q(1.0))
    raise ValueError(f"fused activation {activation} has no int8 clamp")


def tflm_mean_multiplier(input_scale: float, output_scale: float, count: int) -> tuple[int, int]:
    """TFLM's int8 MEAN: (multiplier, shift) of s_in / s_out, then divided by ``count`` in integers.

    ``shift = min(floor(log2(count)), 32, 31 + shift0)``, ``multiplier = (m0 << shift) // count``
    (truncating), ``shift = shift0 - shift``; the mean is then
    ``requantize(sum(x - z_x), multiplier, shift) + z_y``. The multiplier lies in
    (m0 / 2, m0], so it may be below 2^30 (it is not renormalised).
    """
    m0, s0 = quantize_multiplier(float(input_scale) / float(output_scale))
    if count < 1:
        raise ValueError(f"MEAN over {count} elements")
    shift = min(int(count).bit_length() - 1, 32, 31 + s0)
    return int((m0 << shift) // count), s0 - shift


def quantize_tflm(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLM's QUANTIZE float32 -> int8: ``round(x / (float)scale) + z`` in float32, halves away from zero."""
    q = round_half_away(np.asarray(x, dtype=np.float32) / np.float32(scale))
    return np.clip(q.astype(np.int64) + int(zero_point), -128, 127).astype(np.int8)


def dequantize_tflm(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLM's DEQUANTIZE int8 -> float32: ``(float)(double(scale) * (q - z))``."""
    return (float(scale) * (np.asarray(q, dtype=np.float64) - int(zero_point))).astype(np.float32)


# --- TFLite Micro's int8 SOFTMAX (gemmlowp fixed point) ---------------------------------
#
# The executable definition of the IR's SOFTMAX op (the C twin is ``mt_softmax_s8.c``):
#
# * compile time (``softmax_params``): ``beta * s_x * 2^26`` (capped at 2^31 - 1) becomes a
#   multiplier and left shift (``quantize_multiplier``; the shift is >= 0), and
#   ``diff_min = -floor(31 * 2^26 / 2^left_shift)``: input differences below it contribute 0;
# * run time (``softmax_s8``), for a row x: ``d = x - max(x)``; each ``d >= diff_min`` is
#   rescaled to Q5.26 (``d * 2^left_shift`` high-multiplied by the multiplier), its
#   exponential taken in Q0.31 by gemmlowp's ``exp_on_negative_values``; the sum of the
#   exponentials (each rounded to Q12.19) is inverted by ``one_over_one_plus_x_for_x_in_0_1``
#   after normalisation; ``y = clamp(round(exp * inverse / 2^e) - 128, -128, 127)`` with
#   ``e = bits_over_unit + 23``; differences below ``diff_min`` give -128.
#
# A row whose sum of exponentials reaches 2^28 (512 or more near-equal inputs) makes the
# final shift exceed 31; TFLM's kernel then fails a check, and so do these (ValueError here,
# MT_ERR_OVERFLOW in C). The output quantization is fixed (scale 1/256, zero point -128), as
# TFLM requires. Additions and subtractions wrap at 32 bits as the C does (none overflows for
# int8 inputs); multiplications are ``saturating_rounding_doubling_high_mul``.

SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12


def softmax_params(beta: float, input_scale: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) as TFLM's Prepare computes them."""
    real = min(float(np.float32(beta)) * float(input_scale) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)),
               float((1 << 31) - 1))
    if not real > 1.0:
        raise ValueError(f"softmax beta * input scale * 2^26 = {real} must be > 1")
    mult, shift = quantize_multiplier(real)
    if shift < 0:  # pragma: no cover - real > 1 gives shift >= 1
        raise ValueError("softmax input multiplier below one")
    radius = math.floor(((1 << SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SCALED_DIFF_INTEGER_BITS))
                        / (1 << shift))
    return mult, shift, -radius


def _wrap(x: np.ndarray) -> np.ndarray:
    """int32 two's-complement wrap of an int64 array (C's int32 + and -)."""
    return ((np.asarray(x, dtype=np.int64) + 2**31) & 0xFFFFFFFF) - 2**31


def _mul(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    return saturating_rounding_doubling_high_mul(a, b)


def _shift_left_sat(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent on int32."""
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, -INT32_MAX - 1, x << exponent))


def _exp_on_interval(a: np.ndarray) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8)."""
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    one_third = 715827883
    x = _wrap(a + (1 << 28))
    x2 = _mul(x, x)
    x3 = _mul(x2, x)
    x4 = _mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(_wrap(_mul(_wrap(x4_over_4 + x3), one_third) + x2), 1)
    return _wrap(constant_term + _mul(constant_term, _wrap(x + poly)))


_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242))
"""(k, exp(-2^k) in Q0.31): the factors applied for each set bit of the integer part."""


def exp_on_negative_values(a: np.ndarray) -> np.ndarray:
    """exp(a) for a <= 0 given in Q5.26, result Q0.31 (gemmlowp)."""
    frac = 31 - SCALED_DIFF_INTEGER_BITS
    one_quarter = 1 << (frac - 2)
    a_mod = _wrap((a & (one_quarter - 1)) - one_quarter)
    result = _exp_on_interval(_shift_left_sat(a_mod, SCALED_DIFF_INTEGER_BITS))
    remainder = _wrap(a_mod - a)
    for k, factor in _BARREL:
        bit = 1 << (frac + k)
        result = np.where((remainder & bit) != 0, _mul(result, factor), result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson, three steps)."""
    total = np.asarray(a, dtype=np.int64) + INT32_MAX
    half_denominator = _div_trunc(total + np.where(total >= 0, 1, -1), 2)
    x = _wrap(1515870810 + _mul(half_denominator, -1010580540))  # 48/17 - 32/17 * d, in Q2.29
    one = 1 << 29
    for _ in range(3):
        one_minus = _wrap(one - _mul(half_denominator, x))
        x = _wrap(x + _shift_left_sat(_mul(x, one_minus), 2))
    return _shift_left_sat(x, 1)


def softmax_s8(x: np.ndarray, beta: float, input_scale: float) -> np.ndarray:
    """int8 softmax over the last axis (TFLM reference kernel), int8 out (scale 1/256, zero -128)."""
    mult, left_shift, diff_min = softmax_params(beta, input_scale)
    x = np.asarray(x)
    rows = x.reshape(-1, x.shape[-1]).astype(np.int64)
    out = np.empty(rows.shape, dtype=np.int8)
    for r, row in enumerate(rows):
        diff = row - row.max()
        live = diff >= diff_min
        scaled = requantize(diff, mult, left_shift)  # left shift, then the high multiply
        exps = exp_on_negative_values(scaled)
        total = int(np.sum(np.where(live, rounding_divide_by_pot(exps, ACCUMULATION_INTEGER_BITS), 0)))
        headroom = 32 - int(total).bit_length()  # CountLeadingZeros of a positive int32
        bits_over_unit = ACCUMULATION_INTEGER_BITS - headroom
        shifted_minus_one = _wrap(((total << headroom) & 0xFFFFFFFF) - (1 << 31))
        inverse = one_over_one_plus_x(np.asarray(shifted_minus_one))
        exponent = bits_over_unit + 31 - 8
        if exponent > 31:
            raise ValueError(f"softmax over {rows.shape[1]} near-equal values: the sum of exponentials reaches 2^28, "
                             "where TFLM's kernel fails its exponent check")
        y = rounding_divide_by_pot(_mul(inverse, exps), exponent) - 128
        out[r] = np.where(live, np.clip(y, -128, 127), -128).astype(np.int8)
    return out.reshape(x.shape)
