"""Every op of the reference interpreter on random shapes, against an independent computation.

* CONV2D / FULLY_CONNECTED: the int32 accumulator is computed with torch in float64 (a
  convolution of integer-valued tensors below 2^53 is exact in float64), then requantized
  with ``microtrain.quant`` and the multipliers of ``interp.reference.output_multipliers``
  (the contract: executors reuse them). The result must match bit for bit, and lie within
  1 LSB of the exact real-valued requantization.
* ADD / GLOBAL_AVG_POOL: within 1 LSB of the exact float64 result, and bit-exact against a
  fixed-point recomputation written here with Python integers (independent of the numpy
  code in ``quant.py``).
* RESHAPE, DEQUANTIZE exactly; SOFTMAX_CROSS_ENTROPY against torch's cross_entropy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from microtrain import quant
from microtrain.interp.reference import run_graph
from microtrain.ir import GraphBuilder, Op, QParams, Tensor
from microtrain.runtime.twins import add_params, avg_pool_params, output_multipliers

SETTINGS = settings(max_examples=40, deadline=None)


# --- independent fixed-point arithmetic in Python integers -----------------------------------

def _srdhm_py(a: int, b: int) -> int:
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    n = ab + nudge
    q = abs(n) // (1 << 31)  # truncation toward zero
    return q if n >= 0 else -q


def _rdbpot_py(x: int, e: int) -> int:
    if e == 0:
        return x
    q, r = divmod(abs(x), 1 << e)  # round half away from zero on the magnitude
    q += 1 if 2 * r >= (1 << e) else 0
    return q if x >= 0 else -q


def _requant_py(acc: int, mult: int, shift: int) -> int:
    shifted = max(-(2**31), min(2**31 - 1, acc * (1 << max(shift, 0))))
    return _rdbpot_py(_srdhm_py(shifted, mult), max(-shift, 0))


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _act(t_name: str, shape, scale: float, zero: int) -> Tensor:
    return Tensor(t_name, tuple(shape), "int8", QParams.per_tensor(scale, zero))


# --- CONV2D ----------------------------------------------------------------------------------

@st.composite
def conv_cases(draw):
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if kind == "depthwise":
        groups = draw(st.integers(1, 6))
        cpg, opg = 1, 1
    else:
        groups = 1 if kind == "dense" else draw(st.integers(2, 3))
        cpg, opg = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 3, 5]))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)),
               draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h = draw(st.integers(max(1, kh - padding[0] - padding[2]), 9))
    w = draw(st.integers(max(1, kw - padding[1] - padding[3]), 9))
    return dict(groups=groups, c_in=groups * cpg, c_out=groups * opg, k=(kh, kw), stride=stride,
                padding=padding, hw=(h, w), seed=draw(st.integers(0, 2**32 - 1)),
                z_x=draw(st.integers(-128, 127)), z_y=draw(st.integers(-128, 127)),
                relu=draw(st.booleans()))


def _conv_acc_torch(x_centered: np.ndarray, w: np.ndarray, b: np.ndarray, stride, padding, groups) -> np.ndarray:
    top, left, bottom, right = padding
    xt = torch.tensor(x_centered, dtype=torch.float64).permute(0, 3, 1, 2)  # NHWC -> NCHW
    xt = F.pad(xt, (left, right, top, bottom))  # padded positions hold x - z_x = 0
    wt = torch.tensor(w, dtype=torch.float64).permute(0, 3, 1, 2)  # OHWI -> OIHW
    out = F.conv2d(xt, wt, stride=stride, groups=groups)[0].permute(1, 2, 0).numpy()  # [OH, OW, O]
    return out.astype(np.int64) + b.astype(np.int64)


@SETTINGS
@given(conv_cases())
def test_conv2d_against_torch(case):
    _check_conv(case)


# Fixed cases so each kernel size, stride, padding style and grouping is always exercised,
# whatever hypothesis draws.
FIXED_CONV_CASES = [
    dict(groups=1, c_in=3, c_out=5, k=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0), hw=(4, 5)),
    dict(groups=1, c_in=4, c_out=3, k=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1), hw=(7, 8)),
    dict(groups=1, c_in=2, c_out=2, k=(5, 5), stride=(1, 1), padding=(2, 2, 2, 2), hw=(5, 5)),
    dict(groups=6, c_in=6, c_out=6, k=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1), hw=(6, 6)),   # depthwise
    dict(groups=4, c_in=4, c_out=4, k=(5, 5), stride=(2, 2), padding=(2, 2, 2, 2), hw=(9, 9)),   # depthwise s2
    dict(groups=4, c_in=4, c_out=4, k=(3, 3), stride=(2, 2), padding=(0, 0, 1, 1), hw=(8, 8)),   # TF "same" s2
    dict(groups=2, c_in=6, c_out=4, k=(3, 1), stride=(1, 2), padding=(1, 0, 1, 0), hw=(5, 6)),   # grouped
    dict(groups=3, c_in=3, c_out=6, k=(1, 5), stride=(2, 1), padding=(0, 1, 0, 2), hw=(3, 7)),   # multiplier 2
]


@pytest.mark.parametrize("case", FIXED_CONV_CASES, ids=lambda c: f"g{c['groups']}-k{c['k']}-s{c['stride']}")
@pytest.mark.parametrize("relu", [False, True])
def test_conv2d_fixed_cases(case, relu):
    _check_conv({**case, "seed": 7, "z_x": -5, "z_y": 3, "relu": relu})


def _check_conv(case):
    rng = np.random.default_rng(case["seed"])
    h, wd = case["hw"]
    kh, kw = case["k"]
    c_in, c_out, groups = case["c_in"], case["c_out"], case["groups"]
    x = rng.integers(-128, 128, size=(1, h, wd, c_in)).astype(np.int8)
    w = rng.integers(-127, 128, size=(c_out, kh, kw, c_in // groups)).astype(np.int8)
    b = rng.integers(-(1 << 14), 1 << 14, size=c_out).astype(np.int32)
    s_x = float(rng.uniform(0.005, 0.1))
    s_w = rng.uniform(1e-3, 0.05, size=c_out)
    acc = _conv_acc_torch(x.astype(np.int64) - case["z_x"], w, b, case["stride"], case["padding"], groups)
    # Output scale: make the largest |real output| about 100 LSB so values span the range.
    real = acc * s_x * s_w
    s_y = float(np.abs(real).max() / 100.0) or 1.0
    act_min = case["z_y"] if case["relu"] else -128

    gb = GraphBuilder()
    gb.add_input(_act("x", x.shape, s_x, case["z_x"]))
    gb.add_tensor(Tensor("w", w.shape, "int8", QParams.per_channel(s_w), w))
    gb.add_tensor(Tensor("b", b.shape, "int32", None, b))
    gb.add_tensor(_act("y", (1,) + acc.shape, s_y, case["z_y"]))
    gb.add_node("conv", Op.CONV2D, ["x", "w", "b"], ["y"], stride=case["stride"], padding=case["padding"],
                groups=groups, act_min=act_min, act_max=127)
    g = gb.build(["y"])
    got = run_graph(g, {"x": x})["y"]

    x_t, w_t, y_t = g.tensors["x"], g.tensors["w"], g.tensors["y"]
    mult, shift = output_multipliers(x_t, w_t, y_t)
    expected = np.clip(quant.requantize(acc, mult, shift) + case["z_y"], act_min, 127).astype(np.int8)
    assert got.dtype == np.int8 and got.shape == (1,) + acc.shape
    np.testing.assert_array_equal(got[0], expected)
    exact = np.clip(_round_half_away(real / s_y) + case["z_y"], act_min, 127)
    assert np.abs(got[0].astype(np.int64) - exact).max() <= 1


# --- FULLY_CONNECTED -------------------------------------------------------------------------

@SETTINGS
@given(c_in=st.integers(1, 64), c_out=st.integers(1, 16), seed=st.integers(0, 2**32 - 1),
       z_x=st.integers(-128, 127), z_y=st.integers(-128, 127))
def test_fully_connected_against_torch(c_in, c_out, seed, z_x, z_y):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(1, c_in)).astype(np.int8)
    w = rng.integers(-127, 128, size=(c_out, c_in)).astype(np.int8)
    b = rng.integers(-(1 << 16), 1 << 16, size=c_out).astype(np.int32)
    s_x, s_w = float(rng.uniform(0.005, 0.1)), rng.uniform(1e-3, 0.05, size=c_out)
    acc = F.linear(torch.tensor(x.astype(np.int64) - z_x, dtype=torch.float64),
                   torch.tensor(w, dtype=torch.float64))[0].numpy().astype(np.int64) + b
    real = acc * s_x * s_w
    s_y = float(np.abs(real).max() / 100.0) or 1.0

    gb = GraphBuilder()
    gb.add_input(_act("x", x.shape, s_x, z_x))
    gb.add_tensor(Tensor("w", w.shape, "int8", QParams.per_channel(s_w), w))
    gb.add_tensor(Tensor("b", b.shape, "int32", None, b))
    gb.add_tensor(_act("y", (1, c_out), s_y, z_y))
    gb.add_node("fc", Op.FULLY_CONNECTED, ["x", "w", "b"], ["y"])
    g = gb.build(["y"])
    got = run_graph(g, {"x": x})["y"]

    mult, shift = output_multipliers(g.tensors["x"], g.tensors["w"], g.tensors["y"])
    expected = np.clip(quant.requantize(acc, mult, shift) + z_y, -128, 127)
    assert got.dtype == np.int8 and got.shape == (1, c_out)
    np.testing.assert_array_equal(got[0], expected)
    assert np.abs(got[0] - np.clip(_round_half_away(real / s_y) + z_y, -128, 127)).max() <= 1


# --- ADD -------------------------------------------------------------------------------------

@SETTINGS
@given(h=st.integers(1, 6), w=st.integers(1, 6), c=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
       z_a=st.integers(-128, 127), z_b=st.integers(-128, 127), z_y=st.integers(-128, 127),
       s_a=st.floats(1e-3, 0.5), ratio=st.floats(0.05, 20.0), out_factor=st.floats(0.3, 3.0),
       relu=st.booleans())
def test_add_exact_and_fixed_point(h, w, c, seed, z_a, z_b, z_y, s_a, ratio, out_factor, relu):
    rng = np.random.default_rng(seed)
    s_b = s_a * ratio
    s_y = (s_a + s_b) * out_factor
    shape = (1, h, w, c)
    a = rng.integers(-128, 128, size=shape).astype(np.int8)
    b = rng.integers(-128, 128, size=shape).astype(np.int8)
    act_min = z_y if relu else -128

    gb = GraphBuilder()
    gb.add_input(_act("a", shape, s_a, z_a))
    gb.add_input(_act("b", shape, s_b, z_b))
    gb.add_tensor(_act("y", shape, s_y, z_y))
    gb.add_node("add", Op.ADD, ["a", "b"], ["y"], act_min=act_min, act_max=127)
    g = gb.build(["y"])
    got = run_graph(g, {"a": a, "b": b})["y"]
    assert got.dtype == np.int8 and got.shape == shape

    real = s_a * (a.astype(np.float64) - z_a) + s_b * (b.astype(np.float64) - z_b)
    exact = np.clip(_round_half_away(real / s_y) + z_y, act_min, 127)
    assert np.abs(got.astype(np.int64) - exact).max() <= 1

    p = add_params(g.tensors["a"], g.tensors["b"], g.tensors["y"])
    for idx in np.ndindex(shape):
        ra = _requant_py((int(a[idx]) - z_a) << p["left_shift"], p["a_mult"], p["a_shift"])
        rb = _requant_py((int(b[idx]) - z_b) << p["left_shift"], p["b_mult"], p["b_shift"])
        y = _requant_py(ra + rb, p["y_mult"], p["y_shift"]) + z_y
        assert int(got[idx]) == min(max(y, act_min), 127), idx


# --- GLOBAL_AVG_POOL -------------------------------------------------------------------------

@SETTINGS
@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
       z_x=st.integers(-128, 127), z_y=st.integers(-128, 127), s_x=st.floats(1e-3, 0.5),
       out_factor=st.floats(0.5, 2.0))
def test_global_avg_pool_exact_and_fixed_point(h, w, c, seed, z_x, z_y, s_x, out_factor):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(1, h, w, c)).astype(np.int8)
    s_y = s_x * out_factor

    gb = GraphBuilder()
    gb.add_input(_act("x", x.shape, s_x, z_x))
    gb.add_tensor(_act("y", (1, 1, 1, c), s_y, z_y))
    gb.add_node("pool", Op.GLOBAL_AVG_POOL, ["x"], ["y"])
    g = gb.build(["y"])
    got = run_graph(g, {"x": x})["y"]
    assert got.dtype == np.int8 and got.shape == (1, 1, 1, c)

    mean_real = (x.astype(np.float64) - z_x).mean(axis=(1, 2), keepdims=True) * s_x
    exact = np.clip(_round_half_away(mean_real / s_y) + z_y, -128, 127)
    assert np.abs(got.astype(np.int64) - exact).max() <= 1

    mult, shift = avg_pool_params(g.tensors["x"], g.tensors["y"])
    for ch in range(c):
        acc = int((x[0, :, :, ch].astype(np.int64) - z_x).sum())
        assert int(got[0, 0, 0, ch]) == min(max(_requant_py(acc, mult, shift) + z_y, -128), 127)


# --- RESHAPE, DEQUANTIZE, SOFTMAX_CROSS_ENTROPY ------------------------------------------------

@SETTINGS
@given(h=st.integers(1, 5), w=st.integers(1, 5), c=st.integers(1, 8), seed=st.integers(0, 2**32 - 1),
       z=st.integers(-128, 127), s=st.floats(1e-4, 1.0))
def test_reshape_then_dequantize(h, w, c, seed, z, s):
    x = np.random.default_rng(seed).integers(-128, 128, size=(1, h, w, c)).astype(np.int8)
    gb = GraphBuilder()
    gb.add_input(_act("x", x.shape, s, z))
    gb.add_tensor(_act("flat", (1, h * w * c), s, z))
    gb.add_tensor(Tensor("real", (1, h * w * c), "float32"))
    gb.add_node("flatten", Op.RESHAPE, ["x"], ["flat"], shape=(1, h * w * c))
    gb.add_node("deq", Op.DEQUANTIZE, ["flat"], ["real"])
    out = run_graph(gb.build(["real"]), {"x": x}, keep_all=True)
    assert out["flat"].dtype == np.int8
    np.testing.assert_array_equal(out["flat"], x.reshape(1, -1))  # row-major NHWC order
    assert out["real"].dtype == np.float32
    # (float)(q - z) * float32(s), one float32 multiplication, as mt_dequantize_s8_f32 computes it
    want = (x.reshape(1, -1).astype(np.int32) - z).astype(np.float32) * np.float32(s)
    np.testing.assert_array_equal(out["real"], want.astype(np.float32))
    close = s * (x.reshape(1, -1).astype(np.float64) - z)  # within float32 rounding of the exact value
    np.testing.assert_allclose(out["real"], close, rtol=2.5e-7, atol=0)


@SETTINGS
@given(k=st.integers(2, 50), seed=st.integers(0, 2**32 - 1), spread=st.floats(0.1, 30.0))
def test_softmax_cross_entropy_against_torch(k, seed, spread):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(1, k)) * spread).astype(np.float32)
    label = np.array([rng.integers(0, k)], dtype=np.int32)
    gb = GraphBuilder()
    gb.add_input(Tensor("logits", (1, k), "float32"))
    gb.add_input(Tensor("label", (1,), "int32"))
    gb.add_tensor(Tensor("loss", (1,), "float32"))
    gb.add_node("ce", Op.SOFTMAX_CROSS_ENTROPY, ["logits", "label"], ["loss"])
    got = run_graph(gb.build(["loss"]), {"logits": logits, "label": label})["loss"]
    want = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(label).long()).item()
    assert got.dtype == np.float32 and got.shape == (1,)
    assert abs(float(got[0]) - want) <= 1e-5 * max(1.0, abs(want))


def test_softmax_cross_entropy_large_logits_are_stable():
    # 1000 and -1000 would overflow exp() without the max subtraction.
    logits = np.array([[1000.0, -1000.0, 999.0]], dtype=np.float32)
    gb = GraphBuilder()
    gb.add_input(Tensor("logits", (1, 3), "float32"))
    gb.add_input(Tensor("label", (1,), "int32"))
    gb.add_tensor(Tensor("loss", (1,), "float32"))
    gb.add_node("ce", Op.SOFTMAX_CROSS_ENTROPY, ["logits", "label"], ["loss"])
    g = gb.build(["loss"])
    loss = run_graph(g, {"logits": logits, "label": np.array([2], dtype=np.int32)})["loss"][0]
    assert abs(float(loss) - float(np.log1p(np.exp(-1.0)) + 1.0)) < 1e-5  # log(e^1000+e^999) - 999


def test_python_fixed_point_twin_matches_quant_on_boundaries():
    """The Python-int twin used above agrees with quant.py on boundary values (so the ADD/pool
    checks are a real cross-check of two implementations, not a tautology)."""
    values = [0, 1, -1, 2, -2, 3, -3, 7, -7, 8, -8, 24, -24, 2**30, -(2**30), 2**31 - 1, -(2**31)]
    mults = [0, 1, 1 << 29, 1 << 30, 3 << 29, 2**31 - 1]
    for acc in values:
        for m in mults:
            for s in (-31, -20, -4, -1, 0, 1, 3, 12):
                assert int(quant.requantize(acc, m, s)) == _requant_py(acc, m, s), (acc, m, s)


def _pool_graph():
    gb = GraphBuilder()
    gb.add_input(_act("x", (1, 2, 2, 3), 0.1, 0))
    gb.add_tensor(_act("y", (1, 1, 1, 3), 0.1, 0))
    gb.add_node("pool", Op.GLOBAL_AVG_POOL, ["x"], ["y"])
    return gb.build(["y"])


def test_run_graph_checks_feeds():
    g = _pool_graph()
    with pytest.raises(ValueError, match="missing value for graph input 'x'"):
        run_graph(g, {})
    with pytest.raises(ValueError, match=r"input 'x' must be int8\[1, 2, 2, 3\], got int32\[1, 2, 2, 3\]"):
        run_graph(g, {"x": np.zeros((1, 2, 2, 3), dtype=np.int32)})
    with pytest.raises(ValueError, match=r"got int8\[1, 2, 3\]"):
        run_graph(g, {"x": np.zeros((1, 2, 3), dtype=np.int8)})


def test_run_graph_keep_all_and_hand_pool():
    x = np.array([[[[1, 2, 3], [5, 6, -7]], [[9, 10, 11], [15, -48, -13]]]], dtype=np.int8)
    out = run_graph(_pool_graph(), {"x": x}, keep_all=True)
    # Same scale in and out, zero points 0: M = 1/4 = (2^30, -1). Channel sums 30, -30, -6:
    # SRDHM(sum, 2^30) = sum/2 exactly (15, -15, -3), then the rounding shift by 1 rounds the
    # halves away from zero: 7.5 -> 8, -7.5 -> -8, -1.5 -> -2.
    assert out["y"].reshape(-1).tolist() == [8, -8, -2]
    assert set(out) == {"x", "y"}
