"""Every int8 forward kernel bit-exact against interp/reference.py EVAL_RULES, on seeded
random shapes and parameters: kernels 1/3/5/7, strides 1/2, asymmetric paddings, grouped
and depthwise convs, activation ranges, zero points at the int8 extremes, biases near the
int32 limits (saturation), and requantization multipliers on both sides of 1."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from runtime_harness.rt import assert_equal_first, ptr, runtime

from microtrain.interp.reference import EVAL_RULES
from microtrain.ir.graph import GraphBuilder, QParams, Tensor
from microtrain.ir.ops import Op
from microtrain.ir.verify import conv_output_hw, verify_graph
from microtrain.runtime import cbind, packs, twins

pytestmark = pytest.mark.host_c

ZERO_POINTS = (-128, 127, 0, -5, 33)


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


def _act(rng) -> tuple[int, int]:
    r = rng.random()
    if r < 0.4:
        return -128, 127
    lo = int(rng.integers(-128, 20))
    return lo, int(rng.integers(lo, 128))


def _weighted_graph(rng, op: Op, x_shape, w_shape, out_shape_fn, **attrs):
    """x -> op(w, b) -> y with random quantization chosen so outputs are neither all
    saturated nor all zero (plus the occasional extreme)."""
    z_x = int(rng.choice(ZERO_POINTS)) if rng.random() < 0.5 else int(rng.integers(-128, 128))
    z_y = int(rng.choice(ZERO_POINTS)) if rng.random() < 0.5 else int(rng.integers(-128, 128))
    s_x = float(10 ** rng.uniform(-3, -1))
    out_c = w_shape[0]
    s_w = 10 ** rng.uniform(-4, -1.5, out_c)
    k = int(np.prod(w_shape[1:]))
    # acc ~ sqrt(k) * 74 * 73; aim the output at +-50 units, spread by a factor 10 either way
    s_y = float(s_x * np.median(s_w) * np.sqrt(k) * 5400 / 50 * 10 ** rng.uniform(-1, 1))
    w = rng.integers(-127, 128, w_shape).astype(np.int8)
    bias_range = int(min(2**31 - 1, 4 * np.sqrt(k) * 5400))
    b = rng.integers(-bias_range, bias_range + 1, out_c).astype(np.int32)
    if rng.random() < 0.15:  # biases at the int32 limits exercise the saturating add
        b[: max(1, out_c // 2)] = rng.choice([2**31 - 1, -(2**31), 2**31 - 2000, -(2**31) + 2000],
                                             max(1, out_c // 2))
    act_min, act_max = _act(rng)
    gb = GraphBuilder()
    gb.add_input(Tensor("x", tuple(x_shape), "int8", QParams.per_tensor(s_x, z_x)))
    gb.add_tensor(Tensor("w", tuple(w_shape), "int8", QParams.per_channel(s_w), w))
    gb.add_tensor(Tensor("b", (out_c,), "int32", QParams.per_channel(s_x * s_w), b))
    gb.add_tensor(Tensor("y", tuple(out_shape_fn()), "int8", QParams.per_tensor(s_y, z_y)))
    node = gb.add_node("n", op, ["x", "w", "b"], ["y"], act_min=act_min, act_max=act_max, **attrs)
    graph = gb.build(["y"])
    verify_graph(graph)
    x = rng.integers(-128, 128, x_shape).astype(np.int8)
    return graph, node, x


def _reference(graph, node, feeds):
    values = {n: t.data for n, t in graph.tensors.items() if t.is_const}
    values.update(feeds)
    return EVAL_RULES[node.op](node, graph, values)[0]


def _quant(graph, node):
    mult, shift = twins.per_channel_quant(node, graph)
    return mult, shift, cbind.PerChannelQuant(ptr(mult), ptr(shift))


def _conv_case(rng, kernel, stride, groups, depthwise=False):
    h, w = int(rng.integers(kernel, kernel + 8)), int(rng.integers(max(1, kernel - 2), kernel + 7))
    if depthwise:
        c_in = c_out = groups = int(rng.integers(1, 9))
    else:
        c_in = groups * int(rng.integers(1, 5))
        c_out = groups * int(rng.integers(1, 5))
    pad = tuple(int(v) for v in rng.integers(0, kernel // 2 + 2, 4)) if rng.random() < 0.7 else (0, 0, 0, 0)
    top, left, bottom, right = pad
    if h + top + bottom < kernel:
        h = kernel
    if w + left + right < kernel:
        w = kernel
    oh, ow = conv_output_hw(h, w, kernel, kernel, (stride, stride), pad)
    return _weighted_graph(rng, Op.CONV2D, (1, h, w, c_in), (c_out, kernel, kernel, c_in // groups),
                           lambda: (1, oh, ow, c_out), stride=(stride, stride), padding=pad, groups=groups)


def _run_conv(rt, fn, graph, node, x):
    p = cbind.ConvParams(**twins.conv_params(node, graph))
    _m, _s, q = _quant(graph, node)
    w, b = graph.tensors["w"].data, graph.tensors["b"].data
    out = np.zeros(graph.tensors["y"].shape, dtype=np.int8)
    status = getattr(rt, fn)(ctypes.byref(p), ctypes.byref(q), ptr(x), ptr(w), ptr(b), ptr(out))
    assert status == twins.MT_OK, f"{fn} returned {twins.STATUS_NAMES.get(status, status)}"
    return out


CONV_CASES = [(k, s, g) for k in (1, 3, 5, 7) for s in (1, 2) for g in (1, 2, 3)]


@pytest.mark.parametrize("kernel,stride,groups", CONV_CASES)
def test_conv2d_s8_bit_exact(rt, kernel, stride, groups):
    rng = np.random.default_rng(1000 + 100 * kernel + 10 * stride + groups)
    distinct: set[int] = set()
    for _ in range(3):
        graph, node, x = _conv_case(rng, kernel, stride, groups)
        expected = _reference(graph, node, {"x": x})
        assert_equal_first(_run_conv(rt, "mt_conv2d_s8", graph, node, x), expected,
                           f"mt_conv2d_s8 {twins.conv_params(node, graph)}")
        distinct.update(np.unique(expected).tolist())
    assert len(distinct) > 5, f"the random cases should exercise many output values, got {sorted(distinct)}"


@pytest.mark.parametrize("kernel,stride", [(k, s) for k in (3, 5, 7) for s in (1, 2)])
def test_depthwise_conv2d_s8_bit_exact(rt, kernel, stride):
    rng = np.random.default_rng(2000 + 10 * kernel + stride)
    for _ in range(4):
        graph, node, x = _conv_case(rng, kernel, stride, 1, depthwise=True)
        expected = _reference(graph, node, {"x": x})
        what = f"{twins.conv_params(node, graph)}"
        assert_equal_first(_run_conv(rt, "mt_depthwise_conv2d_s8", graph, node, x), expected,
                           f"mt_depthwise_conv2d_s8 {what}")
        assert_equal_first(_run_conv(rt, "mt_conv2d_s8", graph, node, x), expected, f"mt_conv2d_s8 dw {what}")


def test_pointwise_conv2d_s8_bit_exact(rt):
    rng = np.random.default_rng(3000)
    for _ in range(12):
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        c_in, c_out = (int(v) for v in rng.integers(1, 40, 2))
        graph, node, x = _weighted_graph(rng, Op.CONV2D, (1, h, w, c_in), (c_out, 1, 1, c_in),
                                         lambda h=h, w=w, c=c_out: (1, h, w, c))
        expected = _reference(graph, node, {"x": x})
        assert_equal_first(_run_conv(rt, "mt_pointwise_conv2d_s8", graph, node, x), expected,
                           "mt_pointwise_conv2d_s8")
        assert_equal_first(_run_conv(rt, "mt_conv2d_s8", graph, node, x), expected, "mt_conv2d_s8 1x1")


def test_pointwise_conv2d_s8_with_set_up_pack(rt):
    """The compile-time set-up pack (runtime/packs.py: mt_conv_pack_s8, called as the code generator
    calls it) gives the same integers as the kernel's own per-call set-up, and its words are the
    folded store's: bias2 = 2 (bias - z_x sum w), the row sums folded in."""
    rng = np.random.default_rng(3100)
    for case in range(12):
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        c_in, c_out = int(rng.integers(1, 40)), int(rng.integers(2, 40))
        graph, node, x = _weighted_graph(rng, Op.CONV2D, (1, h, w, c_in), (c_out, 1, 1, c_in),
                                         lambda h=h, w=w, c=c_out: (1, h, w, c))
        fields = twins.conv_params(node, graph)
        mult, shift, _q = _quant(graph, node)
        wt, b = graph.tensors["w"].data, graph.tensors["b"].data
        extended = case % 3  # the words; with the pre-extended rows; the rows alone
        words = packs.conv_pack(fields, mult, shift, wt, None if case % 4 == 3 else b, extended)
        ne4 = (c_in + 3) // 4 * 4
        assert words[1] == c_in
        assert len(words) == 2 + ((9 if extended != 2 else 0) + (ne4 if extended else 0)) * (c_out // 2)
        rows = wt.reshape(c_out, -1).astype(np.int64)
        for pair in range(c_out // 2 if extended != 2 else 0):
            e = words[2 + 9 * pair: 11 + 9 * pair]
            if e[0] == 0:
                continue
            for k in range(2):
                bias = 0 if case % 4 == 3 else int(b[2 * pair + k])
                if e[4 + 3 * k - 1] != 0:  # a live channel (a dead one's multiplier is 0)
                    assert e[1 + k] == 2 * (bias - fields["input_zero_point"] * int(rows[2 * pair + k].sum()))
        p = cbind.ConvParams(**fields)
        bias_arg = None if case % 4 == 3 else ptr(b)
        outs = []
        for pack in (None, ptr(words)):
            q = cbind.PerChannelQuant(ptr(mult), ptr(shift), pack)
            out = np.zeros(graph.tensors["y"].shape, dtype=np.int8)
            assert rt.mt_pointwise_conv2d_s8(ctypes.byref(p), ctypes.byref(q), ptr(x), ptr(wt), bias_arg,
                                             ptr(out)) == 0
            outs.append(out)
        assert_equal_first(outs[1], outs[0], "mt_pointwise_conv2d_s8 with its pack vs without")
        if bias_arg is not None:
            assert_equal_first(outs[1], _reference(graph, node, {"x": x}), "mt_pointwise_conv2d_s8 with its pack")
    depthwise = cbind.ConvParams(**{**fields, "groups": 2, "in_c": 2, "out_c": 2})
    assert rt.mt_conv_pack_get_size(ctypes.byref(depthwise), 0) == 0


def test_fully_connected_s8_bit_exact(rt):
    rng = np.random.default_rng(4000)
    for _ in range(20):
        c_in, c_out = int(rng.integers(1, 300)), int(rng.integers(1, 20))
        graph, node, x = _weighted_graph(rng, Op.FULLY_CONNECTED, (1, c_in), (c_out, c_in),
                                         lambda c=c_out: (1, c))
        expected = _reference(graph, node, {"x": x})
        p = cbind.FcParams(**twins.fc_params(node, graph))
        _m, _s, q = _quant(graph, node)
        out = np.zeros(c_out, dtype=np.int8)
        assert rt.mt_fully_connected_s8(ctypes.byref(p), ctypes.byref(q), ptr(x[0]), ptr(graph.tensors["w"].data),
                                        ptr(graph.tensors["b"].data), ptr(out)) == twins.MT_OK
        assert_equal_first(out, expected[0], f"mt_fully_connected_s8 {twins.fc_params(node, graph)}")


def _two_input_graph(rng, op: Op, shape_a, shape_y, s_a, s_b, s_y, **attrs):
    z = [int(rng.choice(ZERO_POINTS)) if rng.random() < 0.5 else int(rng.integers(-128, 128)) for _ in range(3)]
    gb = GraphBuilder()
    gb.add_input(Tensor("a", shape_a, "int8", QParams.per_tensor(s_a, z[0])))
    inputs = ["a"]
    if s_b is not None:
        gb.add_input(Tensor("b", shape_a, "int8", QParams.per_tensor(s_b, z[1])))
        inputs.append("b")
    gb.add_tensor(Tensor("y", shape_y, "int8", QParams.per_tensor(s_y, z[2])))
    node = gb.add_node("n", op, inputs, ["y"], **attrs)
    graph = gb.build(["y"])
    verify_graph(graph)
    return graph, node


def test_add_s8_bit_exact(rt):
    rng = np.random.default_rng(5000)
    for trial in range(30):
        shape = (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 17)))
        s_a, s_b = (float(v) for v in 10 ** rng.uniform(-3, -1, 2))
        s_y = float(max(s_a, s_b) * 10 ** rng.uniform(-0.5, 1.0))
        lo, hi = _act(rng)
        graph, node = _two_input_graph(rng, Op.ADD, shape, shape, s_a, s_b, s_y, act_min=lo, act_max=hi)
        a = rng.integers(-128, 128, shape).astype(np.int8)
        b = rng.integers(-128, 128, shape).astype(np.int8)
        if trial == 0:  # every pair of extremes
            a.ravel()[:4], b.ravel()[:4] = [-128, -128, 127, 127][: a.size], [-128, 127, -128, 127][: a.size]
        expected = _reference(graph, node, {"a": a, "b": b})
        p = cbind.AddParams(**twins.add_params_struct(node, graph))
        out = np.zeros(shape, dtype=np.int8)
        assert rt.mt_add_s8(ctypes.byref(p), ptr(a), ptr(b), ptr(out)) == twins.MT_OK
        assert_equal_first(out, expected, f"mt_add_s8 {twins.add_params_struct(node, graph)}")
        # in place (output aliasing input a)
        a_copy = a.copy()
        assert rt.mt_add_s8(ctypes.byref(p), ptr(a_copy), ptr(b), ptr(a_copy)) == twins.MT_OK
        assert_equal_first(a_copy, expected, "mt_add_s8 in place")


def test_global_avg_pool_s8_bit_exact(rt):
    rng = np.random.default_rng(6000)
    for _ in range(30):
        h, w, c = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 20))
        s_x = float(10 ** rng.uniform(-3, -1))
        s_y = float(s_x * 10 ** rng.uniform(-1, 1))
        lo, hi = _act(rng)
        graph, node = _two_input_graph(rng, Op.GLOBAL_AVG_POOL, (1, h, w, c), (1, 1, 1, c), s_x, None, s_y,
                                       act_min=lo, act_max=hi)
        x = rng.integers(-128, 128, (1, h, w, c)).astype(np.int8)
        expected = _reference(graph, node, {"a": x})
        p = cbind.AvgPoolParams(**twins.avg_pool_params_struct(node, graph))
        out = np.zeros(c, dtype=np.int8)
        assert rt.mt_global_avg_pool_s8(ctypes.byref(p), ptr(x), ptr(out)) == twins.MT_OK
        assert_equal_first(out, expected.ravel(), f"mt_global_avg_pool_s8 {twins.avg_pool_params_struct(node, graph)}")


def test_forward_kernels_reject_bad_params(rt):
    rng = np.random.default_rng(7000)
    graph, node, x = _conv_case(rng, 3, 1, 1)
    good = twins.conv_params(node, graph)
    mult, shift, q = _quant(graph, node)
    w, b = graph.tensors["w"].data, graph.tensors["b"].data
    out = np.full(graph.tensors["y"].shape, 99, dtype=np.int8)
    cases = {twins.MT_ERR_SHAPE: [{"out_h": good["out_h"] + 1}, {"groups": 5}, {"stride_h": 0}, {"pad_top": -1}],
             twins.MT_ERR_PARAM: [{"input_zero_point": 128}, {"act_min": 10, "act_max": 9}, {"act_max": 128}]}
    for status, changes in cases.items():
        for change in changes:
            p = cbind.ConvParams(**{**good, **change})
            got = rt.mt_conv2d_s8(ctypes.byref(p), ctypes.byref(q), ptr(x), ptr(w), ptr(b), ptr(out))
            assert got == status, f"{change}: got {got}, expected {status}"
    p = cbind.ConvParams(**good)
    assert rt.mt_conv2d_s8(ctypes.byref(p), ctypes.byref(q), ptr(x), ptr(w), ptr(b), None) == twins.MT_ERR_NULL
    bad_shift = shift.copy()
    bad_shift[0] = 31
    q_bad = cbind.PerChannelQuant(ptr(mult), ptr(bad_shift))
    assert rt.mt_conv2d_s8(ctypes.byref(p), ctypes.byref(q_bad), ptr(x), ptr(w), ptr(b), ptr(out)) == \
        twins.MT_ERR_PARAM
    assert (out == 99).all(), "a kernel that returns an error must not write its output"
    # the pointwise fast path refuses anything but 1x1/stride 1/no padding/1 group
    assert rt.mt_pointwise_conv2d_s8(ctypes.byref(p), ctypes.byref(q), ptr(x), ptr(w), ptr(b), ptr(out)) == \
        twins.MT_ERR_SHAPE
    # accumulator bound: a 3x3 kernel over 8192 channels (73728 products) is refused
    big = {**good, "in_c": 8192}
    assert rt.mt_conv2d_s8(ctypes.byref(cbind.ConvParams(**big)), ctypes.byref(q), ptr(x), ptr(w), ptr(b),
                           ptr(out)) == twins.MT_ERR_OVERFLOW


def test_accumulator_bound_is_tight(rt):
    """The worst case the bound allows (65536 products of (127 - (-128)) * -128) fits int32:
    bit-exact with the reference at exactly MAX_DOT_LENGTH."""
    n = twins.MAX_DOT_LENGTH
    gb = GraphBuilder()
    gb.add_input(Tensor("x", (1, n), "int8", QParams.per_tensor(0.01, -128)))
    gb.add_tensor(Tensor("w", (2, n), "int8", QParams.per_channel([1e-3, 1e-3]),
                         np.stack([np.full(n, -128), np.full(n, 127)]).astype(np.int8)))
    gb.add_tensor(Tensor("b", (2,), "int32", QParams.per_channel([1e-5, 1e-5]), np.zeros(2, np.int32)))
    gb.add_tensor(Tensor("y", (1, 2), "int8", QParams.per_tensor(1e-5 * 255 * 128 * n / 100, 0)))
    node = gb.add_node("n", Op.FULLY_CONNECTED, ["x", "w", "b"], ["y"])
    graph = gb.build(["y"])
    x = np.full((1, n), 127, dtype=np.int8)
    expected = _reference(graph, node, {"x": x})
    p = cbind.FcParams(**twins.fc_params(node, graph))
    _m, _s, q = _quant(graph, node)
    out = np.zeros(2, dtype=np.int8)
    assert rt.mt_fully_connected_s8(ctypes.byref(p), ctypes.byref(q), ptr(x[0]), ptr(graph.tensors["w"].data),
                                    ptr(graph.tensors["b"].data), ptr(out)) == twins.MT_OK
    assert_equal_first(out, expected[0], "FC at the accumulator bound")
    assert out.tolist() == [-100, 99]  # the extreme sums came through unsaturated
