"""The quantization arithmetic of ``microtrain.quant`` against hand-worked cases.

Every expected value below is worked out by hand in the comment next to it, from the
definitions of the TFLite int8 spec / gemmlowp fixed-point helpers:

* ``quantize_multiplier(M) = (q, s)`` with ``M ~= q * 2^(s - 31)``, ``q`` in [2^30, 2^31).
* ``SRDHM(a, b) = trunc((a*b + nudge) / 2^31)``, nudge = 2^30 if a*b >= 0 else 1 - 2^30,
  saturating INT32_MIN * INT32_MIN to INT32_MAX.
* ``rounding_divide_by_pot(x, e)`` = x / 2^e rounded half away from zero.
* ``requantize(acc, q, s) = RDBPOT(SRDHM(sat32(acc << max(s, 0)), q), max(-s, 0))``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microtrain import quant
from microtrain.quant import INT32_MAX, INT32_MIN

# --- quantize_multiplier -------------------------------------------------------------------


@pytest.mark.parametrize(
    "real, expected",
    [
        (0.0, (0, 0)),                  # zero is representable exactly as multiplier 0
        (0.5, (1 << 30, 0)),            # frexp(0.5) = (0.5, 0): q = 0.5 * 2^31 = 2^30
        (0.75, (3 << 29, 0)),           # frexp = (0.75, 0): q = 0.75 * 2^31 = 1610612736
        (1.0 / 16, (1 << 30, -3)),      # frexp = (0.5, -3)
        (1.0, (1 << 30, 1)),            # frexp = (0.5, 1): one left shift
        # Just below 1: mantissa 1 - 2^-40 rounds to 2^31, which is out of range, so the
        # multiplier is halved and the shift incremented: (2^30, 1) == 1.0.
        (1.0 - 2.0**-40, (1 << 30, 1)),
        (2.0**-32, (1 << 30, -31)),     # frexp = (0.5, -31): the smallest representable shift
        (2.0**-33, (0, 0)),             # shift -32 < -31: too small, the product is always 0
        (1e-20, (0, 0)),
        (2.0**30 - 1, ((1 << 31) - 2, 30)),  # frexp = ((2^30-1)/2^30, 30): q = 2^31 - 2, the largest M
    ],
)
def test_quantize_multiplier_hand_cases(real, expected):
    assert quant.quantize_multiplier(real) == expected


def test_quantize_multiplier_value_is_close():
    # The represented value q * 2^(s-31) is within half a unit of the 31-bit mantissa.
    for real in (0.1, 0.3333, 1.7, 123.456, 3e-5, 0.0078125):
        q, s = quant.quantize_multiplier(real)
        assert (1 << 30) <= q < (1 << 31)
        assert abs(q * 2.0 ** (s - 31) - real) <= 2.0 ** (s - 32)


@pytest.mark.parametrize("real", [2.0**30, 1e12, -0.5, -1e-9, math.inf, math.nan])
def test_quantize_multiplier_rejects(real):
    with pytest.raises(ValueError):
        quant.quantize_multiplier(real)


# --- saturating_rounding_doubling_high_mul ----------------------------------------------------


@pytest.mark.parametrize(
    "a, b, expected",
    [
        (INT32_MIN, INT32_MIN, INT32_MAX),  # the only overflowing product saturates
        (INT32_MIN, INT32_MAX, -INT32_MAX),  # -2^31*(2^31-1)/2^31 = -(2^31-1), exact
        (1 << 30, 1 << 30, 1 << 29),        # 2^60 / 2^31 = 2^29 exactly
        (3, 1 << 30, 2),                    # 3*2^30/2^31 = 1.5; +nudge 2^30 -> 2^32/2^31 = 2
        # Negative product: nudge 1 - 2^30, then truncation toward zero:
        # (-3*2^30 + 1 - 2^30) / 2^31 = -2 + 2^-31 -> trunc -> -1 (gemmlowp rounds -1.5 to -1).
        (-3, 1 << 30, -1),
        (-3 * (1 << 30) - 1, 1, -2),         # product -(3*2^30+1): (-2^32) / 2^31 = -2 exactly
        (5, 1 << 30, 3),                    # 2.5 -> (5*2^30 + 2^30)/2^31 = 3
        (-5, 1 << 30, -2),                  # -2.5 -> (-6*2^30 + 1)/2^31 = -3 + 2^-31 -> -2
        (1, 1 << 29, 0),                    # 0.25 -> (2^29 + 2^30)/2^31 = 0.75 -> 0
        (-1, 1 << 29, 0),                   # -0.25 -> (-2^29 + 1 - 2^30)/2^31 = -0.75 -> 0 (trunc)
        (-7, 1 << 30, -3),                  # -3.5 -> (-8*2^30 + 1)/2^31 = -4 + 2^-31 -> -3
        (7, 3 << 29, 5),                    # 3*2^29 is M = 0.75: 7*0.75 = 5.25 -> (21+2)*2^29/2^31 = 5.75 -> 5
    ],
)
def test_srdhm_hand_cases(a, b, expected):
    assert int(quant.saturating_rounding_doubling_high_mul(a, b)) == expected


def test_srdhm_vectorised_matches_scalar():
    a = np.array([INT32_MIN, -3, 3, 12345678, -987654321], dtype=np.int64)
    b = np.array([INT32_MIN, 1 << 30, 1 << 30, 1518500250, INT32_MAX], dtype=np.int64)
    vec = quant.saturating_rounding_doubling_high_mul(a, b)
    assert [int(v) for v in vec] == [int(quant.saturating_rounding_doubling_high_mul(int(x), int(y)))
                                     for x, y in zip(a, b, strict=True)]


# --- rounding_divide_by_pot -----------------------------------------------------------------


@pytest.mark.parametrize(
    "x, e, expected",
    [
        (8, 4, 1),      # 0.5 -> 1 (half away from zero)
        (-8, 4, -1),    # -0.5 -> -1
        (7, 4, 0),      # 0.4375 -> 0
        (-7, 4, 0),     # -0.4375 -> 0
        (9, 4, 1),      # 0.5625 -> 1
        (-9, 4, -1),
        (24, 4, 2),     # 1.5 -> 2
        (-24, 4, -2),   # -1.5 -> -2
        (23, 4, 1),     # 1.4375 -> 1
        (-23, 4, -1),
        (5, 0, 5),      # exponent 0 is the identity
        (-5, 0, -5),
        (1, 1, 1),      # 0.5 -> 1
        (-1, 1, -1),    # -0.5 -> -1
        (3, 1, 2),      # 1.5 -> 2
        (-3, 1, -2),
        (INT32_MAX, 31, 1),   # (2^31-1)/2^31 just below 1 -> 1
        (INT32_MIN, 31, -1),  # exactly -1
        (1 << 30, 31, 1),     # exactly 0.5 -> 1
        (-(1 << 30), 31, -1),  # exactly -0.5 -> -1
        ((1 << 30) - 1, 31, 0),
    ],
)
def test_rounding_divide_by_pot_hand_cases(x, e, expected):
    assert int(quant.rounding_divide_by_pot(x, e)) == expected


# --- requantize -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "acc, mult, shift, expected",
    [
        (100, 1 << 30, 0, 50),           # M = 0.5: 50 exactly
        (3, 1 << 30, 0, 2),              # 1.5 -> 2 in SRDHM, no right shift
        (-3, 1 << 30, 0, -1),            # -1.5 -> -1: gemmlowp's nudge (not half-away)
        (100, 1 << 30, -3, 6),           # M = 1/16: SRDHM = 50, 50/8 = 6.25 -> 6
        (-100, 1 << 30, -3, -6),         # SRDHM = -50, -6.25 -> -6
        (104, 1 << 30, -3, 7),           # SRDHM = 52, 52/8 = 6.5 -> 7 (half away)
        (-104, 1 << 30, -3, -7),         # -6.5 -> -7
        (100, 1 << 30, 1, 100),          # M = 1: acc << 1 = 200, SRDHM(200, 2^30) = 100
        (-77, 1 << 30, 1, -77),
        (1000, 3 << 29, 2, 3000),        # M = 0.75 * 4 = 3: (1000 << 2) * 0.75 = 3000
        # shift -31, M = 2^-32: SRDHM(2^31-1, 2^30) = ((2^31-1)*2^30 + 2^30)/2^31 = 2^30;
        # then 2^30 / 2^31 = 0.5 -> 1. The exact product is 0.4999999998 -> 0: double rounding.
        (INT32_MAX, 1 << 30, -31, 1),
        (INT32_MIN, 1 << 30, -31, -1),   # SRDHM = -2^30 exactly, -0.5 -> -1
        (12345, 1 << 30, -31, 0),
        # Left-shift saturation: 2^20 << 12 = 2^32 saturates to 2^31 - 1 before the
        # multiply, so the result is SRDHM(2^31-1, 2^30) = 2^30, not the exact 2^31.
        (1 << 20, 1 << 30, 12, 1 << 30),
        # -2^20 << 12 = -2^32 -> INT32_MIN; SRDHM(-2^31, 2^30) = (-2^61 + 1 - 2^30)/2^31
        # = -2^30 - 0.5 + 2^-31 -> trunc -> -2^30.
        (-(1 << 20), 1 << 30, 12, -(1 << 30)),
        (0, 1 << 30, -31, 0),
        (0, 0, 0, 0),                    # multiplier 0 (a tiny scale) always gives 0
        (INT32_MAX, 0, 0, 0),
    ],
)
def test_requantize_hand_cases(acc, mult, shift, expected):
    assert int(quant.requantize(acc, mult, shift)) == expected


def test_requantize_per_channel_broadcast():
    acc = np.array([[100, 100], [-104, 104]], dtype=np.int64)
    mult = np.array([1 << 30, 1 << 30])
    shift = np.array([0, -3])
    # column 0: M = 0.5 -> 50, -52; column 1: M = 1/16 -> 6.25 -> 6, 6.5 -> 7
    assert quant.requantize(acc, mult, shift).tolist() == [[50, 6], [-52, 7]]


def _round_half_away(f: Fraction) -> int:
    n = math.floor(abs(f) + Fraction(1, 2))
    return n if f >= 0 else -n


@settings(max_examples=300, deadline=None)
@given(acc=st.integers(INT32_MIN, INT32_MAX), mantissa=st.floats(0.5, 1.0, exclude_max=True),
       exponent=st.integers(-31, 8))
def test_requantize_within_one_of_exact(acc, mantissa, exponent):
    """requantize(acc) is within 1 of round_half_away(acc * M_exact).

    M_exact = q * 2^(s-31) is the multiplier actually represented. The TFLite scheme rounds
    twice (once in the high multiply, once in the right shift), each at most half a unit
    of its own result, so the result can differ from the single exact rounding by one
    (see the INT32_MAX, shift -31 hand case above); it can never differ by two.
    """
    q, s = quant.quantize_multiplier(math.ldexp(mantissa, exponent))
    if s > 0 and not (INT32_MIN <= acc * (1 << s) <= INT32_MAX):
        acc = acc >> s  # keep the left shift from saturating (tested separately)
    exact = _round_half_away(Fraction(acc) * q * Fraction(2) ** (s - 31))
    got = int(quant.requantize(acc, q, s))
    assert abs(got - exact) <= 1, (acc, q, s, got, exact)


@settings(max_examples=200, deadline=None)
@given(acc=st.integers(-(1 << 24), 1 << 24), e=st.integers(0, 20))
def test_requantize_power_of_two_is_single_rounding(acc, e):
    # M = 2^-e exactly is (q, s) = (2^30, 1 - e). For even acc the high multiply
    # SRDHM(acc, 2^30) = acc / 2 is exact (for e = 0 the left shift doubles acc first), so
    # only the final right shift by e - 1 rounds: the result is round_half_away(acc / 2^e).
    acc = 2 * (acc // 2)
    got = int(quant.requantize(acc, 1 << 30, 1 - e))
    assert got == _round_half_away(Fraction(acc, 1 << e))


# --- weight, bias, activation quantization ----------------------------------------------------


def test_quantize_weights_per_channel_hand_case():
    w = np.array([[1.0, -2.0], [0.5, 0.25]])
    q, scales = quant.quantize_weights_per_channel(w, axis=0)
    # row 0: scale 2/127; 1 / (2/127) = 63.5 -> 64 (numpy rounds half to even), -2 -> -127
    # row 1: scale 0.5/127; 0.5 -> 127, 0.25 -> 63.5 -> 64
    assert q.dtype == np.int8
    assert q.tolist() == [[64, -127], [127, 64]]
    np.testing.assert_array_equal(scales, [2.0 / 127, 0.5 / 127])


def test_quantize_weights_per_channel_axis_and_zero_channel():
    w = np.zeros((2, 3, 3, 4))
    w[1, 0, 0, 0] = -0.3
    w[1, 2, 2, 3] = 0.1
    q, scales = quant.quantize_weights_per_channel(w, axis=0)
    assert scales[0] > 0 and not q[0].any()   # an all-zero channel keeps a positive scale
    assert scales[1] == pytest.approx(0.3 / 127, rel=0, abs=1e-18)
    assert q[1, 0, 0, 0] == -127 and q[1, 2, 2, 3] == 42  # 0.1 / (0.3/127) = 42.33 -> 42
    assert np.abs(q).max() <= 127  # symmetric: -128 is never used


def test_quantize_weights_reconstruction_error():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 3, 3, 5))
    q, scales = quant.quantize_weights_per_channel(w)
    err = np.abs(q * scales[:, None, None, None] - w)
    assert np.all(err <= scales[:, None, None, None] / 2 + 1e-15)


def test_quantize_bias_hand_and_saturation():
    # b / (s_x * s_w): 0.3 / (0.1*0.5) = 6; -0.26 / (0.1*0.2) = -13; huge values saturate.
    b = quant.quantize_bias(np.array([0.3, -0.26, 1e10, -1e10]), 0.1, np.array([0.5, 0.2, 1.0, 1.0]))
    assert b.dtype == np.int32
    assert b.tolist() == [6, -13, INT32_MAX, INT32_MIN]


@pytest.mark.parametrize(
    "lo, hi, scale, zero",
    [
        (-1.0, 3.0, 4.0 / 255, -64),    # zero = round(-128 + 1/(4/255)) = round(-64.25) = -64
        (0.0, 6.0, 6.0 / 255, -128),    # ReLU6: lo = 0 -> zero point -128
        (2.0, 5.0, 5.0 / 255, -128),    # range widened to include 0
        (-4.0, -1.0, 4.0 / 255, 127),   # all negative: hi widened to 0 -> zero = 127
        (0.0, 0.0, 1.0 / 255, -128),    # degenerate range
    ],
)
def test_choose_activation_qparams(lo, hi, scale, zero):
    s, z = quant.choose_activation_qparams(lo, hi)
    assert s == pytest.approx(scale, rel=1e-15) and z == zero
    assert -128 <= z <= 127
    # 0 is exactly representable: the integer z dequantizes to exactly 0.0
    assert quant.dequantize(np.int8(z), s, z) == 0.0
    assert quant.quantize(np.array([0.0]), s, z)[0] == z


@settings(max_examples=100, deadline=None)
@given(lo=st.floats(-100, 0), width=st.floats(1e-3, 200), seed=st.integers(0, 2**32 - 1))
def test_quantize_dequantize_round_trip(lo, width, seed):
    hi = lo + width
    s, z = quant.choose_activation_qparams(lo, hi)
    x = np.random.default_rng(seed).uniform(lo, hi, size=64)
    q = quant.quantize(x, s, z)
    assert q.dtype == np.int8
    back = quant.dequantize(q, s, z)
    # Inside the representable range the error is at most half a step.
    rep_lo, rep_hi = s * (-128 - z), s * (127 - z)
    inside = (x >= rep_lo) & (x <= rep_hi)
    assert np.all(np.abs(back[inside] - x[inside]) <= s / 2 * (1 + 1e-9))
    # Outside it saturates to the nearest end.
    assert np.all(q[x < rep_lo] == -128) and np.all(q[x > rep_hi] == 127)


def test_quantize_rounds_half_to_even_and_saturates():
    # x / s + z with s = 1, z = 0: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2 (rint); 300 -> 127, -300 -> -128
    assert quant.quantize(np.array([0.5, 1.5, -2.5, 300.0, -300.0]), 1.0, 0).tolist() == [0, 2, -2, 127, -128]
    assert quant.dequantize(np.array([-128, 127], dtype=np.int8), 0.5, -1).tolist() == [-63.5, 64.0]


def test_vector_helpers_match_scalar_forms():
    reals = np.array([0.0, 2.0**-33, 1.0 / 16, 0.3, 1.0, 5.5])
    mults, shifts = quant.quantize_multipliers(reals)
    assert [(int(m), int(s)) for m, s in zip(mults, shifts, strict=True)] == [quant.quantize_multiplier(float(r))
                                                                              for r in reals]
    assert quant.saturate_int32([2**40, -(2**40), 5]).tolist() == [INT32_MAX, INT32_MIN, 5]
