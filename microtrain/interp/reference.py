"""The reference interpreter: the executable definition of every op (numpy, batch 1).

Plain loops over the output, one call to ``quant.requantize`` per op, offsets and clamp
last, in the order of TFLite Micro's reference kernels. Speed is not a goal here (the
vectorised loops over channels are only there so a 128x128 model runs in seconds);
clarity is. Every other executor (torch simulator, generated C) is tested against this.

``EVAL_RULES[op](node, graph, values) -> list of output arrays``: the ops of an inference
graph (int8 forward, the fused frozen block, dequantize, loss); the training ops' rules are in
``interp/training.py``, whose ``ALL_EVAL_RULES`` is the registry's complete "eval" table.
The compile-time multipliers come from ``runtime/twins.py``, the ones the generated C gets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from microtrain import quant
from microtrain.interp.window_ops import WINDOW_EVAL_RULES
from microtrain.ir.fused_blocks import block_subgraph
from microtrain.ir.graph import Graph, Node, Tensor
from microtrain.ir.ops import Op
from microtrain.ir.verify import verify_graph
from microtrain.runtime.twins import add_params, avg_pool_params, output_multipliers

EvalRule = Callable[[Node, Graph, Mapping[str, np.ndarray]], list[np.ndarray]]


def _clamp_store(acc_scaled: np.ndarray, y: Tensor, node: Node) -> np.ndarray:
    out = acc_scaled + y.quant.z
    return np.clip(out, node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)).astype(np.int8)


def _conv2d(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    x_t, w_t, b_t = (graph.tensors[n] for n in node.inputs)
    y_t = graph.tensors[node.outputs[0]]
    x, w, b = (values[n] for n in node.inputs)
    _, h, wd, c_in = x_t.shape
    c_out, kh, kw, c_per_group = w_t.shape
    groups = int(node.attrs.get("groups", 1))
    sh, sw = node.attrs.get("stride", (1, 1))
    top, left, bottom, right = node.attrs.get("padding", (0, 0, 0, 0))
    _, oh, ow, _ = y_t.shape
    # Padding with the zero point makes padded positions contribute (z - z) = 0.
    xs = np.pad(x[0].astype(np.int64) - x_t.quant.z, ((top, bottom), (left, right), (0, 0)))
    out_per_group = c_out // groups
    # Definition, for output position (oy, ox) and output channel o of group g = o // out_per_group:
    #   acc[oy, ox, o] = sum_{ky, kx, i} xs[oy*sh + ky, ox*sw + kx, g*c_per_group + i] * w[o, ky, kx, i]
    # Evaluated tap by tap: for a fixed (ky, kx), the strided slice of xs starting at (ky, kx)
    # holds, at [oy, ox], exactly the input pixel that tap sees for output (oy, ox), so each
    # tap adds one batched matrix product per group. Depthwise is c_per_group = out_per_group
    # = 1: a per-channel product. Integer arithmetic in int64, so the order of summation
    # cannot change the result: |acc| <= kh*kw*C*255*127 << 2^63.
    xg = xs.reshape(xs.shape[0], xs.shape[1], groups, c_per_group)
    wg = w.astype(np.int64).reshape(groups, out_per_group, kh, kw, c_per_group)
    acc = np.zeros((oh, ow, groups, out_per_group), dtype=np.int64)
    for ky in range(kh):
        for kx in range(kw):
            seen = xg[ky: ky + (oh - 1) * sh + 1: sh, kx: kx + (ow - 1) * sw + 1: sw]  # [oh, ow, groups, c_per_group]
            acc += np.einsum("yxgi,goi->yxgo", seen, wg[:, :, ky, kx, :])
    acc = acc.reshape(oh, ow, c_out)
    acc += b.astype(np.int64)
    mult, shift = output_multipliers(x_t, w_t, y_t)
    return [_clamp_store(quant.requantize(acc, mult, shift), y_t, node)[None]]


def _fully_connected(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    x_t, w_t, _ = (graph.tensors[n] for n in node.inputs)
    y_t = graph.tensors[node.outputs[0]]
    x, w, b = (values[n] for n in node.inputs)
    acc = w.astype(np.int64) @ (x[0].astype(np.int64) - x_t.quant.z) + b.astype(np.int64)
    mult, shift = output_multipliers(x_t, w_t, y_t)
    return [_clamp_store(quant.requantize(acc, mult, shift), y_t, node)[None]]


def _add(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    a_t, b_t = (graph.tensors[n] for n in node.inputs)
    y_t = graph.tensors[node.outputs[0]]
    p = add_params(a_t, b_t, y_t)
    a = (values[node.inputs[0]].astype(np.int64) - a_t.quant.z) << p["left_shift"]
    b = (values[node.inputs[1]].astype(np.int64) - b_t.quant.z) << p["left_shift"]
    total = quant.requantize(a, p["a_mult"], p["a_shift"]) + quant.requantize(b, p["b_mult"], p["b_shift"])
    return [_clamp_store(quant.requantize(total, p["y_mult"], p["y_shift"]), y_t, node)]


def _global_avg_pool(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    x_t = graph.tensors[node.inputs[0]]
    y_t = graph.tensors[node.outputs[0]]
    x = values[node.inputs[0]]
    acc = (x.astype(np.int64) - x_t.quant.z).sum(axis=(1, 2), keepdims=True)
    mult, shift = avg_pool_params(x_t, y_t, node.attrs.get("rule", "multiplier"))
    return [_clamp_store(quant.requantize(acc, mult, shift), y_t, node)]


def _reshape(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return [values[node.inputs[0]].reshape(node.attrs["shape"])]


def _dequantize(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    x_t = graph.tensors[node.inputs[0]]
    # (float)(q - z) * float32(s) in float32, exactly as mt_dequantize_s8_f32 (no double on the device)
    q = values[node.inputs[0]].astype(np.int32) - np.int32(x_t.quant.z)
    return [(q.astype(np.float32) * np.float32(x_t.quant.s)).astype(np.float32)]


def _softmax_cross_entropy(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    from microtrain.runtime.losses import softmax_cross_entropy  # the device's float32 arithmetic, written once

    loss, _ = softmax_cross_entropy(values[node.inputs[0]].astype(np.float32), values[node.inputs[1]][:1])
    return [loss]


def _fused_inverted_bottleneck(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Exactly the block's original ops, run one after the other (``ir/fused_blocks.py``)."""
    sub = block_subgraph(node, graph, values)
    env: dict[str, np.ndarray] = {n: t.data for n, t in sub.tensors.items() if t.is_const}
    env[node.inputs[0]] = values[node.inputs[0]]
    for n in sub.nodes:
        for name, arr in zip(n.outputs, EVAL_RULES[n.op](n, sub, env), strict=True):
            env[name] = arr
    scratch = np.zeros(int(node.attrs["scratch_bytes"]), dtype=np.int8)  # unspecified on the device
    return [env[node.outputs[0]], scratch]


def _mean_squared_error(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    from microtrain.runtime.losses import mean_squared_error  # the device's float32 arithmetic, written once

    t = graph.tensors[node.inputs[1]]
    loss, _ = mean_squared_error(values[node.inputs[0]].reshape(1, -1), values[node.inputs[1]], t.quant.s, t.quant.z)
    return [loss]


EVAL_RULES: dict[Op, EvalRule] = {
    Op.CONV2D: _conv2d,
    Op.FULLY_CONNECTED: _fully_connected,
    Op.ADD: _add,
    Op.GLOBAL_AVG_POOL: _global_avg_pool,
    Op.RESHAPE: _reshape,
    Op.DEQUANTIZE: _dequantize,
    Op.SOFTMAX_CROSS_ENTROPY: _softmax_cross_entropy,
    Op.MEAN_SQUARED_ERROR: _mean_squared_error,
    Op.FUSED_INVERTED_BOTTLENECK: _fused_inverted_bottleneck,
    **{Op[name]: rule for name, rule in WINDOW_EVAL_RULES.items()},  # pools, PAD, CONCAT, SOFTMAX
}


def run_graph(graph: Graph, feeds: Mapping[str, np.ndarray], keep_all: bool = False,
              verify: bool = True) -> dict[str, np.ndarray]:
    """Evaluate ``graph`` on ``feeds`` (graph input name -> array of its declared shape).

    Returns the graph outputs (or every computed tensor with ``keep_all``).
    """
    if verify:
        verify_graph(graph)
    values: dict[str, np.ndarray] = {n: t.data for n, t in graph.tensors.items() if t.is_const}
    for name in graph.inputs:
        if name not in feeds:
            raise ValueError(f"missing value for graph input {name!r}")
        t = graph.tensors[name]
        arr = np.asarray(feeds[name])
        if tuple(arr.shape) != t.shape or str(arr.dtype) != t.dtype:
            raise ValueError(f"input {name!r} must be {t.dtype}{list(t.shape)}, got {arr.dtype}{list(arr.shape)}")
        values[name] = arr
    for node in graph.nodes:
        rule = EVAL_RULES.get(node.op)
        if rule is None:
            raise NotImplementedError(f"the reference interpreter has no rule for op {node.op.value} "
                                      f"(node {node.name!r})")
        for name, arr in zip(node.outputs, rule(node, graph, values), strict=True):
            values[name] = arr
    if keep_all:
        return values
    return {n: values[n] for n in graph.outputs}


def infer(graph: Graph, x: np.ndarray) -> np.ndarray:
    """int8 inference of a single-input, single-output graph on one int8 NHWC sample."""
    (name,) = graph.inputs
    return run_graph(graph, {name: x})[graph.outputs[0]]
