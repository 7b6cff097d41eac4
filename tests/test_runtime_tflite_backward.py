"""The C backward kernels of the .tflite window and copy ops bit-exact against their numpy
definitions (interp/window_ops.py), whose summation order they share, on seeded random
shapes: overhanging pool windows, non-square filters and strides, both average divisors,
max pools with many ties (int8 inputs from a narrow range), pads on every axis, concat parts."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_harness.rt import assert_equal_first, ptr, runtime
from test_runtime_tflite_forward import _pool_case

from microtrain.interp import window_ops
from microtrain.runtime import cbind

pytestmark = pytest.mark.host_c


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


@pytest.mark.parametrize("kind", ["avg", "avg_count_pad", "max"])
def test_pool_grad_kernels_match_numpy(rt, kind):
    rng = np.random.default_rng({"avg": 11, "avg_count_pad": 12, "max": 13}[kind])
    done = 0
    while done < 50:
        case = _pool_case(rng)
        if case is None:
            continue
        x, params, out_hw, filt, stride, pad, _ = case
        if kind == "max" and done % 2:  # many equal values: the first maximum must win in both
            x = rng.integers(-3, 3, x.shape).astype(np.int8)
        g = rng.standard_normal((1, *out_hw, x.shape[3])).astype(np.float32)
        got = np.full(x.shape, np.nan, dtype=np.float32)
        if kind == "max":
            want = window_ops.max_pool2d_grad(g, x, filt, stride, pad)
            assert rt.mt_max_pool2d_grad_f32(params, ptr(x), ptr(g), ptr(got)) == 0
        else:
            params.count_include_pad = int(kind == "avg_count_pad")
            want = window_ops.avg_pool2d_grad(g, x.shape, filt, stride, pad, kind == "avg_count_pad")
            assert rt.mt_avg_pool2d_grad_f32(params, ptr(g), ptr(got)) == 0
        assert_equal_first(got, want, f"{kind} pool grad case {done} filter {filt} stride {stride} pad {pad}")
        done += 1


def test_pad_and_concat_grad_kernels_match_numpy(rt):
    rng = np.random.default_rng(14)
    for case in range(30):
        h, w, c = (int(v) for v in rng.integers(1, 7, 3))
        pads = [(0, 0)] + [tuple(int(v) for v in rng.integers(0, 4, 2)) for _ in range(3)]
        g = rng.standard_normal((1, h + sum(pads[1]), w + sum(pads[2]), c + sum(pads[3]))).astype(np.float32)
        want = window_ops.pad_grad(g, pads)
        got = np.zeros((1, h, w, c), np.float32)
        p = cbind.PadParams(h, w, c, pads[1][0], pads[1][1], pads[2][0], pads[2][1], pads[3][0], pads[3][1], 0)
        assert rt.mt_pad_grad_f32(p, ptr(g), ptr(got)) == 0
        assert_equal_first(got, want, f"pad grad case {case}")

        axis = int(rng.integers(1, 4))
        size = int(rng.integers(1, g.shape[axis] + 1))
        offset = int(rng.integers(0, g.shape[axis] - size + 1))
        want = window_ops.concat_grad(g, axis, offset, size)
        got = np.zeros_like(want)
        inner = int(np.prod(g.shape[axis + 1:]))
        p = cbind.ConcatParams(int(np.prod(g.shape[:axis])), size * inner, g.shape[axis] * inner, offset * inner)
        assert rt.mt_concat_part_grad_f32(p, ptr(g), ptr(got)) == 0
        assert_equal_first(got, want, f"concat grad case {case} axis {axis}")
