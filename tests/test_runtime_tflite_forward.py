"""The C kernels of the .tflite window and copy ops bit-exact against their numpy
definitions (interp/window_ops.py, quant_softmax.py) on seeded random shapes: pools whose
windows overhang the input on any side, non-square filters and strides, fused clamps,
both divisors of the average; pads on every axis; concatenation parts; softmax rows of
any length, beta and input scale (including differences below diff_min)."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_harness.rt import assert_equal_first, ptr, runtime

from microtrain import quant as quant_softmax
from microtrain.interp import window_ops
from microtrain.runtime import cbind

pytestmark = pytest.mark.host_c


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


def _pool_case(rng):
    fh, fw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    h, w, c = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 9))
    top, left = int(rng.integers(0, fh)), int(rng.integers(0, fw))
    bottom, right = int(rng.integers(0, fh)), int(rng.integers(0, fw))
    oh, ow = (h + top + bottom - fh) // sh + 1, (w + left + right - fw) // sw + 1
    if oh < 1 or ow < 1:
        return None
    # every window must hold an input pixel (the C and TFLM refuse an empty average window)
    if (oh - 1) * sh - top >= h or (ow - 1) * sw - left >= w:
        return None
    lo = int(rng.integers(-128, 0)) if rng.random() < 0.5 else -128
    hi = int(rng.integers(lo, 128)) if rng.random() < 0.5 else 127
    x = rng.integers(-128, 128, (1, h, w, c)).astype(np.int8)
    params = cbind.PoolParams(h, w, c, oh, ow, fh, fw, sh, sw, top, left, lo, hi, 0)
    return x, params, (oh, ow), (fh, fw), (sh, sw), (top, left, bottom, right), (lo, hi)


@pytest.mark.parametrize("kind", ["avg", "max", "avg_count_pad"])
def test_pool_kernels_match_numpy(rt, kind):
    rng = np.random.default_rng({"avg": 1, "max": 2, "avg_count_pad": 3}[kind])
    done = 0
    while done < 60:
        case = _pool_case(rng)
        if case is None:
            continue
        x, params, out_hw, filt, stride, pad, (lo, hi) = case
        if kind == "max":
            want = window_ops.max_pool2d_s8(x, out_hw, filt, stride, pad, lo, hi)
            fn = rt.mt_max_pool2d_s8
        else:
            params.count_include_pad = int(kind == "avg_count_pad")
            want = window_ops.avg_pool2d_s8(x, out_hw, filt, stride, pad, lo, hi, kind == "avg_count_pad")
            fn = rt.mt_avg_pool2d_s8
        got = np.zeros_like(want)
        assert fn(params, ptr(x), ptr(got)) == 0
        assert_equal_first(got, want, f"{kind} pool case {done} filter {filt} stride {stride} pad {pad}")
        done += 1


def test_avg_pool_refuses_an_empty_window(rt):
    x = np.zeros((1, 2, 2, 1), np.int8)
    out = np.zeros((1, 2, 2, 1), np.int8)
    # the second output row's window starts at input row 2 of 2
    params = cbind.PoolParams(2, 2, 1, 2, 2, 1, 1, 2, 1, 0, 0, -128, 127, 0)
    assert rt.mt_avg_pool2d_s8(params, ptr(x), ptr(out)) == -2


def test_pad_kernel_matches_numpy(rt):
    rng = np.random.default_rng(4)
    for case in range(40):
        h, w, c = (int(v) for v in rng.integers(1, 7, 3))
        pads = [(0, 0)] + [tuple(int(v) for v in rng.integers(0, 4, 2)) for _ in range(3)]
        value = int(rng.integers(-128, 128))
        x = rng.integers(-128, 128, (1, h, w, c)).astype(np.int8)
        want = window_ops.pad_s8(x, pads, value)
        got = np.zeros_like(want)
        p = cbind.PadParams(h, w, c, pads[1][0], pads[1][1], pads[2][0], pads[2][1], pads[3][0], pads[3][1], value)
        assert rt.mt_pad_s8(p, ptr(x), ptr(got)) == 0
        assert_equal_first(got, want, f"pad case {case} pads {pads}")


def test_concat_parts_build_the_concatenation(rt):
    rng = np.random.default_rng(5)
    for case in range(40):
        rank = int(rng.choice([2, 4]))
        axis = int(rng.integers(1, rank))
        base = [1] + [int(v) for v in rng.integers(1, 6, rank - 1)]
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            shape = list(base)
            shape[axis] = int(rng.integers(1, 5))
            parts.append(rng.integers(-128, 128, shape).astype(np.int8))
        want = window_ops.concat(parts, axis)
        got = np.zeros_like(want)
        outer = int(np.prod(want.shape[:axis]))
        inner = int(np.prod(want.shape[axis + 1:]))
        offset = 0
        for part in parts:
            p = cbind.ConcatParams(outer, part.shape[axis] * inner, want.shape[axis] * inner, offset)
            assert rt.mt_concat_part_s8(p, ptr(np.ascontiguousarray(part)), ptr(got)) == 0
            offset += part.shape[axis] * inner
        assert_equal_first(got, want, f"concat case {case} axis {axis}")


def test_softmax_kernel_matches_numpy(rt):
    rng = np.random.default_rng(6)
    refused = 0
    for case in range(80):
        size = int(rng.choice([1, 2, 3, 10, 12, 100, 1000]))
        beta = float(rng.choice([1.0, 0.5, 2.0]))
        scale = float(10 ** rng.uniform(-3, 0))
        spread = int(rng.choice([2, 20, 256]))
        x = np.clip(rng.integers(-spread // 2, spread // 2 + 1, (1, size)) + int(rng.integers(-100, 100)),
                    -128, 127).astype(np.int8)
        mult, shift, diff_min = quant_softmax.softmax_params(beta, scale)
        p = cbind.SoftmaxParams(1, size, mult, shift, diff_min)
        got = np.zeros_like(x)
        try:
            want = quant_softmax.softmax_s8(x, beta, scale)
        except ValueError:  # too many near-equal inputs: TFLM's exponent check fails, the C says so
            refused += 1
            assert rt.mt_softmax_s8(p, ptr(x), ptr(got)) == -4
            continue
        assert rt.mt_softmax_s8(p, ptr(x), ptr(got)) == 0
        assert_equal_first(got, want, f"softmax case {case} size {size} beta {beta} scale {scale:.4g}")
    assert 0 < refused < 20
