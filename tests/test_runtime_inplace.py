"""mt_depthwise_conv2d_grad_input_inplace_f32 (the input gradient written over the output
gradient, one channel plane of scratch) is bit-exact with the out-of-place kernel."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from runtime_harness.rt import assert_equal_first, ptr, runtime

from microtrain.ir import buffer_sizes
from microtrain.runtime import cbind, twins

pytestmark = pytest.mark.host_c


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


@pytest.mark.parametrize("h,w,c,k", [(1, 1, 1, 3), (8, 8, 24, 3), (5, 7, 9, 5), (4, 3, 6, 7), (6, 6, 4, 1)])
def test_depthwise_grad_input_inplace_bit_exact(rt, h, w, c, k):
    rng = np.random.default_rng(h * 100 + w * 10 + c + k)
    pad = k // 2
    p = cbind.ConvParams(in_h=h, in_w=w, in_c=c, out_h=h, out_w=w, out_c=c, kernel_h=k, kernel_w=k, stride_h=1,
                         stride_w=1, pad_top=pad, pad_left=pad, pad_bottom=pad, pad_right=pad, groups=c,
                         input_zero_point=3, output_zero_point=0, act_min=-128, act_max=127)
    wq = rng.integers(-127, 128, (c, k, k, 1)).astype(np.int8)
    s_w = (10 ** rng.uniform(-3, -1, c)).astype(np.float32)
    g = rng.normal(0, 1, (h, w, c)).astype(np.float32)
    want = np.zeros_like(g)
    assert rt.mt_depthwise_conv2d_grad_input_f32(ctypes.byref(p), ptr(s_w), ptr(wq), ptr(g), ptr(want)) == 0
    size = rt.mt_depthwise_conv2d_grad_input_inplace_get_buffer_size(ctypes.byref(p))
    assert size == buffer_sizes.depthwise_conv2d_grad_input_inplace_get_buffer_size(h, w) == h * w * 4
    scratch = np.full(size // 4, np.nan, np.float32)
    got = g.copy()
    assert rt.mt_depthwise_conv2d_grad_input_inplace_f32(ctypes.byref(p), ptr(s_w), ptr(wq), ptr(got),
                                                         ptr(scratch)) == twins.MT_OK
    assert_equal_first(got, want, f"in-place depthwise grad input {h}x{w}x{c} k{k}")
    assert not np.array_equal(got, g) or h * w == 1


def test_depthwise_grad_input_inplace_rejects_shape_change(rt):
    p = cbind.ConvParams(in_h=8, in_w=8, in_c=4, out_h=4, out_w=4, out_c=4, kernel_h=3, kernel_w=3, stride_h=2,
                         stride_w=2, pad_top=0, pad_left=0, pad_bottom=1, pad_right=1, groups=4,
                         input_zero_point=0, output_zero_point=0, act_min=-128, act_max=127)
    wq, s_w = np.ones((4, 3, 3, 1), np.int8), np.ones(4, np.float32)
    g, scratch = np.ones(8 * 8 * 4, np.float32), np.zeros(64, np.float32)
    assert rt.mt_depthwise_conv2d_grad_input_inplace_f32(ctypes.byref(p), ptr(s_w), ptr(wq), ptr(g),
                                                         ptr(scratch)) == twins.MT_ERR_SHAPE
    assert np.all(g == 1.0)
