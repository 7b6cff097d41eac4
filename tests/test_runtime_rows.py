"""The pointwise ``*_rows`` kernels (a partially trained weight: kept rows in RAM, frozen rows
in flash, a table of row pointers) are bit-exact with the contiguous-weight kernels."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from runtime_harness.rt import assert_equal_first, ptr, runtime

from microtrain.runtime import cbind, twins

pytestmark = pytest.mark.host_c


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


def _split(rng, w: np.ndarray):
    """Two arrays holding the rows of w (a random kept subset, the rest) and the row table."""
    out_c = w.shape[0]
    kept = np.sort(rng.choice(out_c, size=max(1, out_c // 3), replace=False))
    frozen = np.setdiff1d(np.arange(out_c), kept)
    ram = np.ascontiguousarray(w[kept])
    flash = np.ascontiguousarray(w[frozen]) if frozen.size else np.zeros((1,) + w.shape[1:], np.int8)
    row = int(np.prod(w.shape[1:]))
    addr = {int(c): ram.ctypes.data + j * row for j, c in enumerate(kept)}
    addr.update({int(c): flash.ctypes.data + j * row for j, c in enumerate(frozen)})
    table = (ctypes.POINTER(ctypes.c_int8) * out_c)(
        *[ctypes.cast(addr[c], ctypes.POINTER(ctypes.c_int8)) for c in range(out_c)])
    return ram, flash, table


def _params(rng, h, w, c_in, c_out):
    return {"in_h": h, "in_w": w, "in_c": c_in, "out_h": h, "out_w": w, "out_c": c_out, "kernel_h": 1,
            "kernel_w": 1, "stride_h": 1, "stride_w": 1, "pad_top": 0, "pad_left": 0, "pad_bottom": 0,
            "pad_right": 0, "groups": 1, "input_zero_point": int(rng.integers(-128, 128)),
            "output_zero_point": int(rng.integers(-20, 20)), "act_min": -128, "act_max": 127}


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (4, 4, 56, 42), (3, 5, 7, 9), (2, 3, 16, 4), (5, 1, 13, 6)])
def test_pointwise_rows_kernels_bit_exact(rt, shape):
    rng = np.random.default_rng(sum(shape))
    h, w, c_in, c_out = shape
    p = cbind.ConvParams(**_params(rng, h, w, c_in, c_out))
    x = rng.integers(-128, 128, (h, w, c_in)).astype(np.int8)
    wq = rng.integers(-127, 128, (c_out, 1, 1, c_in)).astype(np.int8)
    bias = rng.integers(-2000, 2000, c_out).astype(np.int32)
    mult = rng.integers(2**30, 2**31, c_out).astype(np.int32)
    shift = rng.integers(-12, -4, c_out).astype(np.int32)
    q = cbind.PerChannelQuant(ptr(mult), ptr(shift))
    ram, flash, table = _split(rng, wq)
    want = np.zeros((h, w, c_out), np.int8)
    got = np.full((h, w, c_out), 7, np.int8)
    assert rt.mt_pointwise_conv2d_s8(ctypes.byref(p), ctypes.byref(q), ptr(x), ptr(wq), ptr(bias), ptr(want)) == 0
    assert rt.mt_pointwise_conv2d_rows_s8(ctypes.byref(p), ctypes.byref(q), ptr(x), None, table, ptr(bias),
                                          ptr(got)) == twins.MT_OK
    assert len(np.unique(want)) > min(3, want.size - 1), "the case should exercise several output values"
    assert_equal_first(got, want, f"mt_pointwise_conv2d_rows_s8 {shape}")

    s_w = (10 ** rng.uniform(-3, -1, c_out)).astype(np.float32)
    g = rng.normal(0, 1, (h, w, c_out)).astype(np.float32)
    want_g = np.zeros((h, w, c_in), np.float32)
    got_g = np.full((h, w, c_in), np.nan, np.float32)
    assert rt.mt_conv2d_grad_input_f32(ctypes.byref(p), ptr(s_w), ptr(wq), ptr(g), ptr(want_g)) == twins.MT_OK
    assert rt.mt_pointwise_conv2d_grad_input_rows_f32(ctypes.byref(p), ptr(s_w), None, table, ptr(g),
                                                      ptr(got_g)) == twins.MT_OK
    assert_equal_first(got_g, want_g, f"mt_pointwise_conv2d_grad_input_rows_f32 {shape}")


def test_rows_kernels_need_weights_or_rows(rt):
    rng = np.random.default_rng(5)
    p = cbind.ConvParams(**_params(rng, 2, 2, 3, 4))
    x, out = np.zeros((2, 2, 3), np.int8), np.zeros((2, 2, 4), np.int8)
    m, s = np.full(4, 2**30, np.int32), np.full(4, -1, np.int32)
    q = cbind.PerChannelQuant(ptr(m), ptr(s))
    assert rt.mt_pointwise_conv2d_rows_s8(ctypes.byref(p), ctypes.byref(q), ptr(x), None, None, None,
                                          ptr(out)) == twins.MT_ERR_NULL
    g, gi, sw = np.zeros((2, 2, 4), np.float32), np.zeros((2, 2, 3), np.float32), np.ones(4, np.float32)
    assert rt.mt_pointwise_conv2d_grad_input_rows_f32(ctypes.byref(p), ptr(sw), None, None, ptr(g),
                                                      ptr(gi)) == twins.MT_ERR_NULL
