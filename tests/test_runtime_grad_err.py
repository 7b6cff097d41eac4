"""The integer-error kernels (``--grad-dtype int8|int16``) against their Python twin
(``runtime/grad_quant.py``) and the reference's definitions, bit for bit, on random shapes:
the codes and exponent of ``mt_quantize_error_s8/s16``, the exact weight and bias sums, and the
input gradients, which are the fp32 kernels' on the dequantized error d^."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
from runtime_harness.rt import assert_equal_first, channels, ptr, runtime

from microtrain.ir.verify import conv_output_hw
from microtrain.runtime import cbind
from microtrain.runtime.grad_quant import dequantize_error, exact_f32, quantize_error

pytestmark = pytest.mark.host_c


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


def _i16(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))


def quantize_c(rt, g: np.ndarray, mask: np.ndarray | None, bits: int) -> tuple[np.ndarray, int]:
    codes = np.zeros(g.size, np.int8 if bits == 8 else np.int16)
    e = np.zeros(1, np.int32)
    fn = rt.mt_quantize_error_s8 if bits == 8 else rt.mt_quantize_error_s16
    out = ptr(codes) if bits == 8 else _i16(codes)
    assert fn(ptr(g.ravel()), ptr(mask), g.size, out, ptr(e)) == 0
    return codes.reshape(g.shape), int(e[0])


def error_struct(codes: np.ndarray, e: int) -> cbind.Error:
    return cbind.Error(codes.ctypes.data, 8 if codes.dtype == np.int8 else 16, e)


def _masked(g, mask):
    bits = np.unpackbits(mask, bitorder="little", count=g.size).astype(bool).reshape(g.shape)
    return np.where(bits, g, np.float32(0)).astype(np.float32)


@pytest.mark.parametrize("bits", [8, 16])
def test_quantize_matches_twin(rt, bits):
    rng = np.random.default_rng(bits)
    cases = []
    for scale in (1e-9, 1e-3, 1.0, 300.0):
        g = (rng.standard_normal(int(rng.integers(1, 200))) * scale).astype(np.float32)
        cases.append((g, None))
        cases.append((g, rng.integers(0, 256, (g.size + 7) // 8).astype(np.uint8)))
    halves = np.array([2.0 ** (bits - 2), 0.5, 1.5, 2.5, -0.5, -1.5, 127.5, -3.5], np.float32)  # ties: to even
    cases += [(halves, None), (np.zeros(9, np.float32), None), (np.full(5, 1e-32, np.float32), None),
              (np.array([1.0, np.nan, 2.0], np.float32), None), (np.array([1.0, -np.inf], np.float32), None),
              (np.array([3.0, np.nan], np.float32), np.array([1], np.uint8))]  # the NaN is masked out
    for g, mask in cases:
        d = g if mask is None else _masked(g, mask)
        q, e = quantize_error(d, bits)
        cq, ce = quantize_c(rt, g, mask, bits)
        assert ce == int(e), (g[:4], ce, e)
        assert_equal_first(cq.astype(np.int32), q, f"codes of {g[:3]}")


def _conv(rng, kernel, stride, groups, depthwise=False):
    h, w = int(rng.integers(kernel, kernel + 5)), int(rng.integers(kernel, kernel + 5))
    c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    if depthwise:
        c_in = c_out = groups
    pad = tuple(int(v) for v in rng.integers(0, kernel // 2 + 1, 4))
    oh, ow = conv_output_hw(h, w, kernel, kernel, (stride, stride), pad)
    p = cbind.ConvParams(in_h=h, in_w=w, in_c=c_in, out_h=oh, out_w=ow, out_c=c_out, kernel_h=kernel,
                         kernel_w=kernel, stride_h=stride, stride_w=stride, pad_top=pad[0], pad_left=pad[1],
                         pad_bottom=pad[2], pad_right=pad[3], groups=groups,
                         input_zero_point=int(rng.integers(-128, 128)), output_zero_point=0, act_min=-128,
                         act_max=127)
    x = rng.integers(-128, 128, (h, w, c_in)).astype(np.int8)
    wq = rng.integers(-127, 128, (c_out, kernel, kernel, c_in // groups)).astype(np.int8)
    return p, x, wq, pad


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("seed", range(4))
def test_conv_kernels_match_reference_definitions(rt, bits, seed):
    rng = np.random.default_rng(100 * bits + seed)
    kernel, stride = [(1, 1), (3, 1), (3, 2), (5, 2)][seed]
    groups = [1, 2, 1, 3][seed]
    if seed == 2:  # depthwise
        groups = 6
    p, x, wq, pad = _conv(rng, kernel, stride, groups, depthwise=seed == 2)
    oh, ow, c_out = p.out_h, p.out_w, p.out_c
    g = (rng.standard_normal((oh, ow, c_out)) * 10.0 ** rng.uniform(-6, 1)).astype(np.float32)
    mask = rng.integers(0, 256, (g.size + 7) // 8).astype(np.uint8)
    codes, e = quantize_c(rt, g, mask, bits)
    err = error_struct(np.ascontiguousarray(codes.ravel()), e)
    d_hat = dequantize_error(codes.astype(np.int32), e)
    s_x = np.float32(10 ** rng.uniform(-3, -1))
    s_w = (10 ** rng.uniform(-3, -1, c_out)).astype(np.float32)
    # weight gradient: float32(exact sum of d^ * (x - z_x)) * s_x, the reference's definition
    xi = torch.from_numpy(x.astype(np.float64) - p.input_zero_point).permute(2, 0, 1)[None]
    xi = torch.nn.functional.pad(xi, (pad[1], pad[3], pad[0], pad[2]))
    exact = torch.nn.grad.conv2d_weight(xi, (c_out, wq.shape[3], kernel, kernel),
                                        torch.from_numpy(d_hat.astype(np.float64)).permute(2, 0, 1)[None],
                                        stride=stride, groups=groups).permute(0, 2, 3, 1).numpy()
    keep = np.sort(rng.choice(c_out, size=int(rng.integers(1, c_out + 1)), replace=False)).astype(np.int32)
    gw = np.zeros((len(keep),) + wq.shape[1:], np.float32)
    ch = channels(keep, len(keep), 0, len(keep))
    assert rt.mt_conv2d_grad_weight_err_f32(ctypes.byref(p), s_x, ptr(x), 0, ctypes.byref(err), ctypes.byref(ch),
                                            ptr(gw)) == 0
    assert_equal_first(gw, (exact_f32(exact[keep]) * s_x).astype(np.float32), "weight gradient")
    if groups == p.in_c == c_out:  # depthwise: the kept input channels saved alone give the same bits
        sliced = np.ascontiguousarray(x[:, :, keep])
        gw_sliced = np.zeros_like(gw)
        assert rt.mt_conv2d_grad_weight_err_f32(ctypes.byref(p), s_x, ptr(sliced), 1, ctypes.byref(err),
                                                ctypes.byref(ch), ptr(gw_sliced)) == 0
        assert_equal_first(gw_sliced, gw, "depthwise weight gradient from the sliced input")
    # bias gradient: float32 of the exact sum of d^
    gb = np.zeros(c_out, np.float32)
    all_ch = channels(None, c_out, 0, c_out)
    assert rt.mt_bias_grad_err_f32(ctypes.byref(err), oh * ow, c_out, ctypes.byref(all_ch), ptr(gb)) == 0
    assert_equal_first(gb, exact_f32(d_hat.astype(np.float64).reshape(-1, c_out).sum(0)), "bias gradient")
    # input gradient: the fp32 kernel on d^, bit for bit
    gi = np.zeros((p.in_h, p.in_w, p.in_c), np.float32)
    want = np.zeros_like(gi)
    assert rt.mt_conv2d_grad_input_err_f32(ctypes.byref(p), ptr(s_w), ptr(wq), None, ctypes.byref(err),
                                           ptr(gi)) == 0
    assert rt.mt_conv2d_grad_input_f32(ctypes.byref(p), ptr(s_w), ptr(wq), ptr(np.ascontiguousarray(d_hat)),
                                       ptr(want)) == 0
    assert_equal_first(gi, want, "input gradient")
    # a split weight: its rows read through a row table (rows in any order in memory)
    perm = rng.permutation(c_out)
    shuffled = np.ascontiguousarray(wq[perm])
    table = (ctypes.POINTER(ctypes.c_int8) * c_out)()
    for k, oc in enumerate(perm):
        table[oc] = ctypes.cast(shuffled.ctypes.data + k * shuffled[0].size, ctypes.POINTER(ctypes.c_int8))
    gi_rows = np.zeros_like(gi)
    assert rt.mt_conv2d_grad_input_err_f32(ctypes.byref(p), ptr(s_w), None, table, ctypes.byref(err),
                                           ptr(gi_rows)) == 0
    assert_equal_first(gi_rows, want, "input gradient through a row table")


@pytest.mark.parametrize("bits", [8, 16])
def test_fc_kernels_match_reference_definitions(rt, bits):
    rng = np.random.default_rng(bits)
    c_in, c_out = 37, 10
    p = cbind.FcParams(in_c=c_in, out_c=c_out, input_zero_point=-5, output_zero_point=0, act_min=-128, act_max=127)
    x = rng.integers(-128, 128, c_in).astype(np.int8)
    wq = rng.integers(-127, 128, (c_out, c_in)).astype(np.int8)
    g = (rng.standard_normal(c_out) * 0.01).astype(np.float32)
    codes, e = quantize_c(rt, g, None, bits)
    err = error_struct(codes, e)
    d_hat = dequantize_error(codes.astype(np.int32), e)
    s_x, s_w = np.float32(0.02), (10 ** rng.uniform(-3, -1, c_out)).astype(np.float32)
    keep = np.array([1, 4, 9], np.int32)
    gw = np.zeros((3, c_in), np.float32)
    ch = channels(keep, 3, 0, 3)
    assert rt.mt_fully_connected_grad_weight_err_f32(ctypes.byref(p), s_x, ptr(x), ctypes.byref(err),
                                                     ctypes.byref(ch), ptr(gw)) == 0
    prod = d_hat[keep][:, None].astype(np.float64) * (x.astype(np.float64) + 5)[None]
    assert_equal_first(gw, (exact_f32(prod) * s_x).astype(np.float32), "fc weight gradient")
    gi, want = np.zeros(c_in, np.float32), np.zeros(c_in, np.float32)
    assert rt.mt_fully_connected_grad_input_err_f32(ctypes.byref(p), ptr(s_w), ptr(wq), ctypes.byref(err),
                                                    ptr(gi)) == 0
    assert rt.mt_fully_connected_grad_input_f32(ctypes.byref(p), ptr(s_w), ptr(wq), ptr(d_hat), ptr(want)) == 0
    assert_equal_first(gi, want, "fc input gradient")


def test_bad_errors_are_refused(rt):
    codes = np.zeros(4, np.int8)
    bad = cbind.Error(codes.ctypes.data, 12, 0)
    gb = np.zeros(2, np.float32)
    ch = channels(None, 2, 0, 2)
    assert rt.mt_bias_grad_err_f32(ctypes.byref(bad), 2, 2, ctypes.byref(ch), ptr(gb)) == -3  # MT_ERR_PARAM
    assert rt.mt_bias_grad_err_f32(None, 2, 2, ctypes.byref(ch), ptr(gb)) == -1  # MT_ERR_NULL
    big = cbind.Error(codes.ctypes.data, 16, 0)
    assert rt.mt_bias_grad_err_f32(ctypes.byref(big), 70000, 1, ctypes.byref(ch), ptr(gb)) == -4  # MT_ERR_OVERFLOW
