"""The reference interpreter's tap-by-tap CONV2D equals the per-position definition, bit for bit.

The loop below is the interpreter's earlier formulation (one dot product per output pixel
and group); the interpreter now sums shifted slices per kernel tap so that 128x128 zoo
models run in well under a second. Random shapes, strides, paddings and groups."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from microtrain import quant
from microtrain.interp.reference import EVAL_RULES
from microtrain.ir import GraphBuilder, Op, QParams, Tensor, conv_output_hw
from microtrain.runtime.twins import output_multipliers


def per_position_conv_acc(x: np.ndarray, z: int, w: np.ndarray, b: np.ndarray, stride, padding, groups) -> np.ndarray:
    top, left, bottom, right = padding
    xs = np.pad(x[0].astype(np.int64) - z, ((top, bottom), (left, right), (0, 0)))
    c_out, kh, kw, cpg = w.shape
    opg = c_out // groups
    oh = (xs.shape[0] - kh) // stride[0] + 1
    ow = (xs.shape[1] - kw) // stride[1] + 1
    acc = np.zeros((oh, ow, c_out), np.int64)
    for oy in range(oh):
        for ox in range(ow):
            patch = xs[oy * stride[0]:oy * stride[0] + kh, ox * stride[1]:ox * stride[1] + kw]
            for g in range(groups):
                acc[oy, ox, g * opg:(g + 1) * opg] = np.einsum(
                    "hwi,ohwi->o", patch[:, :, g * cpg:(g + 1) * cpg], w[g * opg:(g + 1) * opg].astype(np.int64))
    return acc + b


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_conv2d_tap_loop_is_bit_identical(data) -> None:
    groups = data.draw(st.sampled_from([1, 2, 3, "dw"]))
    cpg = 1 if groups == "dw" else data.draw(st.integers(1, 4))
    g = data.draw(st.integers(1, 6)) if groups == "dw" else groups
    c_in = cpg * g
    c_out = g if groups == "dw" else g * data.draw(st.integers(1, 3))
    kh, kw = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    h, w_ = data.draw(st.integers(kh, 9)), data.draw(st.integers(kw, 9))
    stride = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    padding = tuple(data.draw(st.integers(0, 2)) for _ in range(4))
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, h, w_, c_in)).astype(np.int8)
    wt = rng.integers(-127, 128, (c_out, kh, kw, cpg)).astype(np.int8)
    bias = rng.integers(-5000, 5000, c_out).astype(np.int32)
    zx, zy = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    oh, ow = conv_output_hw(h, w_, kh, kw, stride, padding)
    b = GraphBuilder()
    b.add_input(Tensor("x", x.shape, "int8", QParams.per_tensor(0.02, zx)))
    b.add_tensor(Tensor("w", wt.shape, "int8", QParams.per_channel(rng.uniform(0.001, 0.01, c_out)), wt))
    b.add_tensor(Tensor("b", bias.shape, "int32", None, bias))
    b.add_tensor(Tensor("y", (1, oh, ow, c_out), "int8", QParams.per_tensor(0.05, zy)))
    node = b.add_node("conv", Op.CONV2D, ("x", "w", "b"), ("y",), stride=stride, padding=padding, groups=g)
    graph = b.build(["y"])
    (got,) = EVAL_RULES[Op.CONV2D](node, graph, {"x": x, "w": wt, "b": bias})
    # Recompute the expected output from the per-position accumulator with the same requantization.
    acc = per_position_conv_acc(x, zx, wt, bias.astype(np.int64), stride, padding, g)
    mult, shift = output_multipliers(graph.tensors["x"], graph.tensors["w"], graph.tensors["y"])
    want = np.clip(quant.requantize(acc, mult, shift) + zy, -128, 127).astype(np.int8)[None]
    assert got.dtype == np.int8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
