"""Every fp32 backward kernel against torch.autograd on the dequantized float equivalent.

Tolerance: rtol 1e-4 and atol 1e-5 * max|expected|. Both sides are float32 sums of up to a
few thousand products taken in different orders (torch's convolution algorithms vs the
documented plain loops), so each element can differ by a few ulps times the sum of the
magnitudes of its terms; the absolute part, relative to the tensor's largest element, covers
elements that are small only through cancellation. Integer-valued or order-identical paths
(masks, gathering, one-channel-at-a-time vs all channels, depthwise vs grouped) are
compared bit-exactly."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from runtime_harness.rt import assert_close_first, assert_equal_first, channels, ptr, runtime

from microtrain.ir import buffer_sizes
from microtrain.ir.verify import conv_output_hw
from microtrain.runtime import cbind, twins

pytestmark = pytest.mark.host_c

RTOL = 1e-4


def close(actual, expected, what):
    expected = np.asarray(expected, dtype=np.float64)
    atol = 1e-5 * max(float(np.abs(expected).max(initial=0.0)), 1e-30)
    assert_close_first(actual, expected, RTOL, atol, what)


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


def _conv_problem(rng, kernel, stride, groups, depthwise=False):
    h, w = int(rng.integers(kernel, kernel + 6)), int(rng.integers(kernel, kernel + 6))
    if depthwise:
        c_in = c_out = groups = int(rng.integers(1, 9))
    else:
        c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 5))
    pad = tuple(int(v) for v in rng.integers(0, kernel // 2 + 1, 4))
    oh, ow = conv_output_hw(h, w, kernel, kernel, (stride, stride), pad)
    p = {"in_h": h, "in_w": w, "in_c": c_in, "out_h": oh, "out_w": ow, "out_c": c_out,
         "kernel_h": kernel, "kernel_w": kernel, "stride_h": stride, "stride_w": stride,
         "pad_top": pad[0], "pad_left": pad[1], "pad_bottom": pad[2], "pad_right": pad[3], "groups": groups,
         "input_zero_point": int(rng.integers(-128, 128)), "output_zero_point": 0, "act_min": -128, "act_max": 127}
    x = rng.integers(-128, 128, (h, w, c_in)).astype(np.int8)
    wq = rng.integers(-127, 128, (c_out, kernel, kernel, c_in // groups)).astype(np.int8)
    s_x = np.float32(10 ** rng.uniform(-3, -1))
    s_w = (10 ** rng.uniform(-3, -1, c_out)).astype(np.float32)
    g = rng.normal(0, 1, (oh, ow, c_out)).astype(np.float32)
    return p, x, wq, s_x, s_w, g


def _torch_conv_grads(p, x, wq, s_x, s_w, g):
    """Gradients of sum(conv(x_real, w_real) * g) w.r.t. x_real and w_real (NHWC / OHWI)."""
    xr = torch.tensor((x.astype(np.float32) - np.float32(p["input_zero_point"])) * s_x)
    xr = xr.permute(2, 0, 1)[None].clone().requires_grad_(True)
    wr = torch.tensor(wq.astype(np.float32) * s_w[:, None, None, None]).permute(0, 3, 1, 2)
    wr = wr.clone().requires_grad_(True)
    xp = F.pad(xr, (p["pad_left"], p["pad_right"], p["pad_top"], p["pad_bottom"]))
    y = F.conv2d(xp, wr, stride=(p["stride_h"], p["stride_w"]), groups=p["groups"])
    (y * torch.tensor(g).permute(2, 0, 1)[None]).sum().backward()
    return xr.grad[0].permute(1, 2, 0).numpy(), wr.grad.permute(0, 2, 3, 1).numpy()


def _grad_input(rt, fn, p, wq, s_w, g):
    out = np.full((p["in_h"], p["in_w"], p["in_c"]), np.nan, dtype=np.float32)
    cp = cbind.ConvParams(**p)
    assert getattr(rt, fn)(ctypes.byref(cp), ptr(s_w), ptr(wq), ptr(g), ptr(out)) == twins.MT_OK
    return out


def _grad_weight(rt, fn, p, s_x, x, g, index, begin, end, sliced=None):
    k = p["kernel_h"] * p["kernel_w"] * (p["in_c"] // p["groups"])
    count = len(index) if index is not None else p["out_c"]
    out = np.full((end - begin, p["kernel_h"], p["kernel_w"], p["in_c"] // p["groups"]), np.nan, dtype=np.float32)
    assert out.size * 4 == rt.mt_conv2d_grad_weight_get_buffer_size(ctypes.byref(cbind.ConvParams(**p)), end - begin)
    assert out.size == (end - begin) * k
    cp, ch = cbind.ConvParams(**p), channels(index, count, begin, end)
    if sliced is None:
        status = getattr(rt, fn)(ctypes.byref(cp), float(s_x), ptr(x), ptr(g), ctypes.byref(ch), ptr(out))
    else:
        status = getattr(rt, fn)(ctypes.byref(cp), float(s_x), ptr(x), sliced, ptr(g), ctypes.byref(ch), ptr(out))
    assert status == twins.MT_OK
    return out


@pytest.mark.parametrize("kernel,stride,groups", [(1, 1, 1), (3, 1, 1), (3, 2, 2), (5, 2, 1), (7, 1, 3),
                                                  (1, 2, 2)])
def test_conv2d_grads_vs_torch(rt, kernel, stride, groups):
    rng = np.random.default_rng(10 * kernel + stride + 100 * groups)
    for _ in range(2):
        p, x, wq, s_x, s_w, g = _conv_problem(rng, kernel, stride, groups)
        gx, gw = _torch_conv_grads(p, x, wq, s_x, s_w, g)
        close(_grad_input(rt, "mt_conv2d_grad_input_f32", p, wq, s_w, g), gx, f"conv grad input {p}")
        kept = np.sort(rng.choice(p["out_c"], size=max(1, p["out_c"] // 2), replace=False)).astype(np.int32)
        all_at_once = _grad_weight(rt, "mt_conv2d_grad_weight_f32", p, s_x, x, g, kept, 0, kept.size)
        close(all_at_once, gw[kept], f"conv grad weight {p} kept {kept}")
        # one channel at a time (the reordering): the same numbers, bit for bit
        one_by_one = np.concatenate([_grad_weight(rt, "mt_conv2d_grad_weight_f32", p, s_x, x, g, kept, j, j + 1)
                                     for j in range(kept.size)])
        assert_equal_first(one_by_one, all_at_once, "grad weight per channel vs all kept channels")
        # index NULL = all channels
        close(_grad_weight(rt, "mt_conv2d_grad_weight_f32", p, s_x, x, g, None, 0, p["out_c"]), gw, "all channels")


def test_grad_weight_reads_only_kept_channels_of_grad_output(rt):
    rng = np.random.default_rng(77)
    p, x, wq, s_x, s_w, g = _conv_problem(rng, 3, 1, 1)
    while p["out_c"] < 3:
        p, x, wq, s_x, s_w, g = _conv_problem(rng, 3, 1, 1)
    kept = np.array([0, p["out_c"] - 1], dtype=np.int32)
    ref = _grad_weight(rt, "mt_conv2d_grad_weight_f32", p, s_x, x, g, kept, 0, 2)
    poisoned = g.copy()
    poisoned[:, :, 1:-1] = np.nan
    assert_equal_first(_grad_weight(rt, "mt_conv2d_grad_weight_f32", p, s_x, x, poisoned, kept, 0, 2), ref,
                       "grad weight with NaN in unkept channels")


@pytest.mark.parametrize("kernel,stride", [(3, 1), (3, 2), (5, 1), (7, 2)])
def test_depthwise_grads_vs_torch(rt, kernel, stride):
    rng = np.random.default_rng(500 + 10 * kernel + stride)
    for _ in range(2):
        p, x, wq, s_x, s_w, g = _conv_problem(rng, kernel, stride, 1, depthwise=True)
        gx, gw = _torch_conv_grads(p, x, wq, s_x, s_w, g)
        gi = _grad_input(rt, "mt_depthwise_conv2d_grad_input_f32", p, wq, s_w, g)
        close(gi, gx, f"depthwise grad input {p}")
        assert_equal_first(gi, _grad_input(rt, "mt_conv2d_grad_input_f32", p, wq, s_w, g),
                           "depthwise vs grouped conv grad input (same order)")
        kept = np.sort(rng.choice(p["in_c"], size=max(1, p["in_c"] // 2), replace=False)).astype(np.int32)
        full = _grad_weight(rt, "mt_depthwise_conv2d_grad_weight_f32", p, s_x, x, g, kept, 0, kept.size, sliced=0)
        close(full, gw[kept], "depthwise grad weight")
        assert_equal_first(full, _grad_weight(rt, "mt_conv2d_grad_weight_f32", p, s_x, x, g, kept, 0, kept.size),
                           "depthwise vs grouped conv grad weight")
        # sliced saved input: only the kept channels, gathered by mt_gather_channels_s8
        spatial = p["in_h"] * p["in_w"]
        sliced_x = np.zeros((spatial, kept.size), dtype=np.int8)
        assert sliced_x.size == rt.mt_gather_channels_get_buffer_size(spatial, kept.size)
        ch = channels(kept, kept.size, 0, 0)  # begin/end ignored by gather
        assert rt.mt_gather_channels_s8(ptr(x), spatial, p["in_c"], ctypes.byref(ch), ptr(sliced_x)) == twins.MT_OK
        assert_equal_first(sliced_x, x.reshape(spatial, -1)[:, kept], "gathered channels")
        for j in range(kept.size):
            one = _grad_weight(rt, "mt_depthwise_conv2d_grad_weight_f32", p, s_x, sliced_x, g, kept, j, j + 1,
                               sliced=1)
            assert_equal_first(one, full[j:j + 1], f"sliced-input depthwise grad weight, kept entry {j}")


def test_fully_connected_grads_vs_torch(rt):
    rng = np.random.default_rng(900)
    for _ in range(8):
        c_in, c_out = int(rng.integers(1, 400)), int(rng.integers(1, 20))
        z_x = int(rng.integers(-128, 128))
        x = rng.integers(-128, 128, c_in).astype(np.int8)
        wq = rng.integers(-127, 128, (c_out, c_in)).astype(np.int8)
        s_x, s_w = np.float32(10 ** rng.uniform(-3, -1)), (10 ** rng.uniform(-3, -1, c_out)).astype(np.float32)
        g = rng.normal(0, 1, c_out).astype(np.float32)
        xr = torch.tensor((x.astype(np.float32) - np.float32(z_x)) * s_x, requires_grad=True)
        wr = torch.tensor(wq.astype(np.float32) * s_w[:, None], requires_grad=True)
        (F.linear(xr, wr) * torch.tensor(g)).sum().backward()
        p = cbind.FcParams(c_in, c_out, z_x, 0, -128, 127)
        gi = np.zeros(c_in, np.float32)
        assert rt.mt_fully_connected_grad_input_f32(ctypes.byref(p), ptr(s_w), ptr(wq), ptr(g), ptr(gi)) == 0
        close(gi, xr.grad.numpy(), "FC grad input")
        kept = np.sort(rng.choice(c_out, size=max(1, c_out // 4), replace=False)).astype(np.int32)
        gw = np.zeros((kept.size, c_in), np.float32)
        assert gw.nbytes == rt.mt_fully_connected_grad_weight_get_buffer_size(ctypes.byref(p), kept.size)
        ch = channels(kept, kept.size, 0, kept.size)
        assert rt.mt_fully_connected_grad_weight_f32(ctypes.byref(p), float(s_x), ptr(x), ptr(g), ctypes.byref(ch),
                                                     ptr(gw)) == 0
        close(gw, wr.grad.numpy()[kept], "FC grad weight")


def test_bias_grad_vs_torch(rt):
    rng = np.random.default_rng(901)
    for spatial, c in [(1, 10), (49, 16), (7, 3)]:
        g = rng.normal(0, 1, (spatial, c)).astype(np.float32)
        b = torch.zeros(c, requires_grad=True)
        ((torch.zeros(spatial, c) + b) * torch.tensor(g)).sum().backward()
        out = np.zeros(c, np.float32)
        ch = channels(None, c, 0, c)
        assert rt.mt_bias_grad_f32(ptr(g), spatial, c, ctypes.byref(ch), ptr(out)) == 0
        close(out, b.grad.numpy(), "bias grad")
        kept = np.array([c - 1, 0], dtype=np.int32)
        part = np.zeros(1, np.float32)
        ch = channels(kept, 2, 1, 2)
        assert rt.mt_bias_grad_f32(ptr(g), spatial, c, ctypes.byref(ch), ptr(part)) == 0
        assert part[0] == out[0]


def test_softmax_cross_entropy_vs_torch(rt):
    rng = np.random.default_rng(902)
    for n, scale in [(10, 1.0), (2, 5.0), (100, 30.0), (7, 1e3)]:  # large logits: stability
        logits = (rng.normal(0, scale, n)).astype(np.float32)
        label = int(rng.integers(0, n))
        t = torch.tensor(logits, requires_grad=True)
        loss_t = F.cross_entropy(t[None], torch.tensor([label]))
        loss_t.backward()
        loss = np.zeros(1, np.float32)
        grad = np.zeros(n, np.float32)
        assert rt.mt_softmax_cross_entropy_f32(ptr(logits), n, label, ptr(loss), ptr(grad)) == 0
        assert np.isfinite(loss[0]) and np.isfinite(grad).all()
        close(loss, [loss_t.item()], f"loss n={n} scale={scale}")
        close(grad, t.grad.numpy(), f"grad logits n={n} scale={scale}")
        # in place, and without a gradient
        inplace = logits.copy()
        assert rt.mt_softmax_cross_entropy_f32(ptr(inplace), n, label, ptr(loss), ptr(inplace)) == 0
        assert_equal_first(inplace, grad, "softmax CE grad in place")
        assert rt.mt_softmax_cross_entropy_f32(ptr(logits), n, label, ptr(loss), None) == 0
        assert rt.mt_softmax_cross_entropy_f32(ptr(logits), n, n, ptr(loss), None) == twins.MT_ERR_PARAM


def test_global_avg_pool_grad_vs_torch(rt):
    rng = np.random.default_rng(903)
    h, w, c = 5, 3, 7
    g = rng.normal(0, 1, c).astype(np.float32)
    x = torch.zeros(h, w, c, requires_grad=True)
    (x.mean(dim=(0, 1)) * torch.tensor(g)).sum().backward()
    out = np.zeros((h, w, c), np.float32)
    assert rt.mt_global_avg_pool_grad_f32(h, w, c, ptr(g), ptr(out)) == 0
    close(out, x.grad.numpy(), "avg pool grad")


def test_dequantize_mask_and_add_exact(rt):
    rng = np.random.default_rng(904)
    q = rng.integers(-128, 128, 1000).astype(np.int8)
    out = np.zeros(1000, np.float32)
    scale, z = np.float32(0.0173), -7
    assert rt.mt_dequantize_s8_f32(ptr(q), 1000, float(scale), z, ptr(out)) == 0
    assert_equal_first(out, (q.astype(np.float32) - np.float32(z)) * scale, "dequantize")
    for n in (1, 8, 13, 1000):
        y = rng.integers(-128, 128, n).astype(np.int8)
        y[: min(n, 4)] = [-128, 127, -20, 100][: min(n, 4)]
        # the clamp ranges of the zoo (-20..100, full int8), ranges past int8, an empty and a reversed one
        for lo, hi in ((-128, 127), (-129, 128), (5, 6), (10, 3), (-2**31, 2**31 - 1), (-20, 100)):
            mask = np.full(rt.mt_clamp_mask_get_buffer_size(n), 0xFF, dtype=np.uint8)
            assert mask.size == buffer_sizes.clamp_mask_get_buffer_size(n) == (n + 7) // 8
            assert rt.mt_clamp_mask_s8(ptr(y), n, lo, hi, ptr(mask)) == 0
            keep = (y.astype(np.int64) > lo) & (y.astype(np.int64) < hi)
            assert_equal_first(mask, np.packbits(keep, bitorder="little"), f"mask bits ({lo}, {hi}; LSB first, tail 0)")
        g = rng.normal(0, 1, n).astype(np.float32)
        masked = g.copy()
        assert rt.mt_apply_mask_f32(ptr(masked), ptr(mask), n, ptr(masked)) == 0  # in place
        assert_equal_first(masked, np.where(keep, g, np.float32(0)), "apply mask")
    a, b = rng.normal(0, 1, 50).astype(np.float32), rng.normal(0, 1, 50).astype(np.float32)
    s = np.zeros(50, np.float32)
    assert rt.mt_add_f32(ptr(a), ptr(b), 50, ptr(s)) == 0
    assert_equal_first(s, a + b, "add f32")


def test_backward_kernels_reject_bad_channels(rt):
    rng = np.random.default_rng(906)
    p, x, wq, s_x, s_w, g = _conv_problem(rng, 3, 1, 1)
    out = np.zeros(p["out_c"] * 9 * p["in_c"], np.float32)
    cp = cbind.ConvParams(**p)
    for index, begin, end in [([p["out_c"]], 0, 1), ([0], 0, 2), ([-1], 0, 1), ([0], 1, 0)]:
        idx = np.array(index, dtype=np.int32)
        ch = channels(idx, idx.size, begin, end)
        assert rt.mt_conv2d_grad_weight_f32(ctypes.byref(cp), float(s_x), ptr(x), ptr(g), ctypes.byref(ch),
                                            ptr(out)) == twins.MT_ERR_PARAM, (index, begin, end)


def test_pointwise_backward_fast_paths_bit_exact(rt):
    """The pointwise grad kernels add four terms per pass in the general kernels' order:
    bit-exact with them (pixel and channel counts on and off multiples of 4)."""
    rng = np.random.default_rng(907)
    for h, w, c_in, c_out in [(1, 1, 1, 1), (4, 4, 56, 336), (3, 5, 7, 9), (2, 3, 16, 4), (5, 1, 13, 6)]:
        p = {"in_h": h, "in_w": w, "in_c": c_in, "out_h": h, "out_w": w, "out_c": c_out, "kernel_h": 1,
             "kernel_w": 1, "stride_h": 1, "stride_w": 1, "pad_top": 0, "pad_left": 0, "pad_bottom": 0,
             "pad_right": 0, "groups": 1, "input_zero_point": int(rng.integers(-128, 128)), "output_zero_point": 0,
             "act_min": -128, "act_max": 127}
        x = rng.integers(-128, 128, (h, w, c_in)).astype(np.int8)
        wq = rng.integers(-127, 128, (c_out, 1, 1, c_in)).astype(np.int8)
        s_x, s_w = np.float32(0.02), (10 ** rng.uniform(-3, -1, c_out)).astype(np.float32)
        g = rng.normal(0, 1, (h, w, c_out)).astype(np.float32)
        assert_equal_first(_grad_input(rt, "mt_pointwise_conv2d_grad_input_f32", p, wq, s_w, g),
                           _grad_input(rt, "mt_conv2d_grad_input_f32", p, wq, s_w, g), f"pointwise grad input {p}")
        kept = np.sort(rng.choice(c_out, size=max(1, c_out // 3), replace=False)).astype(np.int32)
        for begin, end in [(0, kept.size), (kept.size - 1, kept.size)]:
            assert_equal_first(
                _grad_weight(rt, "mt_pointwise_conv2d_grad_weight_f32", p, s_x, x, g, kept, begin, end),
                _grad_weight(rt, "mt_conv2d_grad_weight_f32", p, s_x, x, g, kept, begin, end),
                f"pointwise grad weight {p}")
    bad = cbind.ConvParams(**{**p, "kernel_h": 3, "pad_top": 1, "pad_bottom": 1})
    out = np.zeros(x.size, np.float32)
    assert rt.mt_pointwise_conv2d_grad_input_f32(ctypes.byref(bad), ptr(s_w), ptr(wq), ptr(g), ptr(out)) == \
        twins.MT_ERR_SHAPE
