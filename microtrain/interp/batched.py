"""A batched, vectorised twin of the reference interpreter, for accuracy over whole test sets.

The reference interpreter (``interp/reference.py``) is the definition; this module only
computes the same integers faster: the accumulators are formed over a batch with one
matrix product per kernel tap instead of Python loops over pixels and groups, then the
very same compile-time helpers (``output_multipliers``, ``add_params``,
``avg_pool_params``) and ``quant.requantize`` finish the op. Products go through float64
BLAS: every partial sum is an integer below 2^53 (|x - z| <= 255, |w| <= 127, at most
2^20 terms per output: checked), so the float64 result is exact.
``tests/test_torch_batched.py`` checks bit-equality with the reference interpreter.

``BATCH_RULES[op](node, graph, values) -> list of output arrays`` (leading axis = batch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from microtrain import quant
from microtrain.interp.window_ops import WINDOW_BATCH_RULES
from microtrain.ir.conv_kinds import depthwise
from microtrain.ir.fused_blocks import block_subgraph
from microtrain.ir.graph import Graph, Node, Tensor
from microtrain.ir.ops import FLOAT_OPS, TRAINING_OPS, Op
from microtrain.ir.verify import verify_graph
from microtrain.runtime.twins import add_params, avg_pool_params, output_multipliers

BatchRule = Callable[[Node, Graph, Mapping[str, np.ndarray]], list[np.ndarray]]
_MAX_TERMS = 1 << 20  # 255 * 127 * 2^20 < 2^53: float64 accumulation stays exact


def _store(acc: np.ndarray, y: Tensor, node: Node) -> np.ndarray:
    out = acc + y.quant.z
    return np.clip(out, node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)).astype(np.int8)


def _conv2d(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    x_t, w_t, _ = (graph.tensors[n] for n in node.inputs)
    y_t = graph.tensors[node.outputs[0]]
    x, w, b = (values[n] for n in node.inputs)
    n = x.shape[0]
    c_out, kh, kw, cpg = w_t.shape
    groups = int(node.attrs.get("groups", 1))
    opg = c_out // groups
    sh, sw = node.attrs.get("stride", (1, 1))
    top, left, bottom, right = node.attrs.get("padding", (0, 0, 0, 0))
    _, oh, ow, _ = y_t.shape
    dw = depthwise(groups, x_t.shape[3], w_t.shape)
    if kh * kw * cpg > _MAX_TERMS:
        raise ValueError(f"node {node.name!r}: too many terms per output for exact float64 accumulation")
    xs = np.pad(x.astype(np.float64) - x_t.quant.z, ((0, 0), (top, bottom), (left, right), (0, 0)))
    wg = w.astype(np.float64).reshape(groups, opg, kh, kw, cpg)
    acc = np.zeros((n, oh, ow, groups, opg), dtype=np.float64)
    for ky in range(kh):
        for kx in range(kw):
            patch = xs[:, ky: ky + sh * (oh - 1) + 1: sh, kx: kx + sw * (ow - 1) + 1: sw, :]
            patch = patch.reshape(n, oh, ow, groups, cpg)
            if dw:  # depthwise: an elementwise product per channel
                acc[..., 0] += patch[..., 0] * wg[:, 0, ky, kx, 0]
            else:
                acc += np.einsum("nhwgi,goi->nhwgo", patch, wg[:, :, ky, kx, :], optimize=True)
    acc = acc.reshape(n, oh, ow, c_out).astype(np.int64) + b.astype(np.int64)
    mult, shift = output_multipliers(x_t, w_t, y_t)
    return [_store(quant.requantize(acc, mult, shift), y_t, node)]


def _fully_connected(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    x_t, w_t, _ = (graph.tensors[n] for n in node.inputs)
    y_t = graph.tensors[node.outputs[0]]
    x, w, b = (values[n] for n in node.inputs)
    acc = ((x.astype(np.float64) - x_t.quant.z) @ w.astype(np.float64).T).astype(np.int64) + b.astype(np.int64)
    mult, shift = output_multipliers(x_t, w_t, y_t)
    return [_store(quant.requantize(acc, mult, shift), y_t, node)]


def _add(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    a_t, b_t = (graph.tensors[n] for n in node.inputs)
    y_t = graph.tensors[node.outputs[0]]
    p = add_params(a_t, b_t, y_t)
    a = (values[node.inputs[0]].astype(np.int64) - a_t.quant.z) << p["left_shift"]
    b = (values[node.inputs[1]].astype(np.int64) - b_t.quant.z) << p["left_shift"]
    total = quant.requantize(a, p["a_mult"], p["a_shift"]) + quant.requantize(b, p["b_mult"], p["b_shift"])
    return [_store(quant.requantize(total, p["y_mult"], p["y_shift"]), y_t, node)]


def _global_avg_pool(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    x_t = graph.tensors[node.inputs[0]]
    y_t = graph.tensors[node.outputs[0]]
    acc = (values[node.inputs[0]].astype(np.int64) - x_t.quant.z).sum(axis=(1, 2), keepdims=True)
    mult, shift = avg_pool_params(x_t, y_t, node.attrs.get("rule", "multiplier"))
    return [_store(quant.requantize(acc, mult, shift), y_t, node)]


def _reshape(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    x = values[node.inputs[0]]
    return [x.reshape((x.shape[0],) + tuple(node.attrs["shape"])[1:])]


def _fused_inverted_bottleneck(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The block's original ops one after the other, batched (``ir/fused_blocks.py``)."""
    sub = block_subgraph(node, graph, values)
    env: dict[str, np.ndarray] = {n: t.data for n, t in sub.tensors.items() if t.is_const}
    env[node.inputs[0]] = values[node.inputs[0]]
    for n in sub.nodes:
        for name, arr in zip(n.outputs, BATCH_RULES[n.op](n, sub, env), strict=True):
            env[name] = arr
    return [env[node.outputs[0]], np.zeros(int(node.attrs["scratch_bytes"]), dtype=np.int8)]


BATCH_RULES: dict[Op, BatchRule] = {
    Op.CONV2D: _conv2d,
    Op.FULLY_CONNECTED: _fully_connected,
    Op.ADD: _add,
    Op.GLOBAL_AVG_POOL: _global_avg_pool,
    Op.RESHAPE: _reshape,
    Op.FUSED_INVERTED_BOTTLENECK: _fused_inverted_bottleneck,
    **{Op[name]: rule for name, rule in WINDOW_BATCH_RULES.items()},  # pools, PAD, CONCAT, SOFTMAX
}
# A batched evaluator of int8 inference graphs (whole test sets); float and training ops
# never occur in the graphs it is given.
BATCH_RULES_EXEMPT = FLOAT_OPS | TRAINING_OPS


def infer_batch(graph: Graph, x: np.ndarray, verify: bool = True) -> np.ndarray:
    """int8 inference of a single-input int8 graph on a batch [N, H, W, C] of int8 inputs."""
    if verify:
        verify_graph(graph)
    (name,) = graph.inputs
    t = graph.tensors[name]
    x = np.asarray(x)
    if x.dtype != np.int8 or tuple(x.shape[1:]) != t.shape[1:]:
        raise ValueError(f"input must be int8[N, {', '.join(map(str, t.shape[1:]))}], got {x.dtype}{list(x.shape)}")
    values: dict[str, np.ndarray] = {n: v.data for n, v in graph.tensors.items() if v.is_const}
    values[name] = x
    for node in graph.nodes:
        rule = BATCH_RULES.get(node.op)
        if rule is None:
            raise NotImplementedError(f"the batched interpreter has no rule for op {node.op.value} "
                                      f"(node {node.name!r}); use interp.reference")
        for out, arr in zip(node.outputs, rule(node, graph, values), strict=True):
            values[out] = arr
    return values[graph.outputs[0]]
