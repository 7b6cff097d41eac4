"""The Python twins of the C buffer-size queries return the same numbers as the C."""

from __future__ import annotations

import ctypes

import pytest
from runtime_harness.rt import runtime

from microtrain.ir import buffer_sizes
from microtrain.runtime import cbind

pytestmark = pytest.mark.host_c


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


def test_clamp_mask_size(rt):
    for n in [-3, 0, 1, 7, 8, 9, 16, 17, 12345]:
        assert rt.mt_clamp_mask_get_buffer_size(n) == buffer_sizes.clamp_mask_get_buffer_size(n), n


def test_gather_channels_size(rt):
    for spatial, count in [(0, 3), (5, 0), (49, 4), (4096, 17)]:
        assert rt.mt_gather_channels_get_buffer_size(spatial, count) == \
            buffer_sizes.gather_channels_get_buffer_size(spatial, count)


def test_grad_weight_sizes(rt):
    for kh, kw, in_c, groups, n in [(3, 3, 16, 1, 4), (3, 3, 16, 16, 5), (1, 1, 48, 1, 1), (7, 7, 6, 3, 2),
                                     (3, 3, 8, 1, 0)]:
        p = cbind.ConvParams(in_c=in_c, kernel_h=kh, kernel_w=kw, groups=groups)
        assert rt.mt_conv2d_grad_weight_get_buffer_size(ctypes.byref(p), n) == \
            buffer_sizes.conv2d_grad_weight_get_buffer_size(kh, kw, in_c, groups, n)
    for in_c, n in [(10, 3), (1280, 1), (5, 0)]:
        p = cbind.FcParams(in_c=in_c, out_c=10)
        assert rt.mt_fully_connected_grad_weight_get_buffer_size(ctypes.byref(p), n) == \
            buffer_sizes.fully_connected_grad_weight_get_buffer_size(in_c, n)
