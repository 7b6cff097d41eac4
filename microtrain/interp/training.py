"""Reference evaluation of the training ops (backward + update), next to ``reference.py``.

``TRAINING_EVAL_RULES[op](node, graph, values) -> list of output arrays``, same signature
as ``EVAL_RULES``; ``run_training_step`` runs a whole training graph (forward, loss,
backward, in-place updates) and returns the loss and the updated parameters.

Float arithmetic is float32 and follows the evaluation order documented for each kernel in
``runtime/include/mt_runtime.h`` (loops are vectorised only across elements that do not
share an accumulator), so the generated C matches this evaluator bit for bit (the loss's exp/log are the device's
libm-free ``mt_expf``/``mt_logf``, ``runtime/fmath.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from microtrain.interp.reference import EVAL_RULES, EvalRule
from microtrain.interp.window_ops import WINDOW_GRAD_EVAL_RULES
from microtrain.ir.block_grads import OUTPUT_ROLES, sub_nodes
from microtrain.ir.conv_kinds import depthwise
from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import Op
from microtrain.ir.verify import verify_graph
from microtrain.runtime.grad_quant import dequantize_error, exact_f32, quantize_error
from microtrain.runtime.rounding import apply_update

F32 = np.float32


def _deq_x(x: np.ndarray, zero: int) -> np.ndarray:
    return (x.astype(np.int32) - zero).astype(F32)


def _loss_grad(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    from microtrain.runtime.losses import softmax_cross_entropy  # the device's float32 arithmetic, written once

    _, g = softmax_cross_entropy(values[node.inputs[0]].astype(F32), values[node.inputs[1]][:1])
    return [g]


def _mse_grad(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    from microtrain.runtime.losses import mean_squared_error  # the device's float32 arithmetic, written once

    p, t = values[node.inputs[0]], graph.tensors[node.inputs[1]]
    _, g = mean_squared_error(p.reshape(1, -1), values[node.inputs[1]], t.quant.s, t.quant.z)
    return [g.reshape(p.shape)]


def _clamp_mask(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    y = values[node.inputs[0]].reshape(-1).astype(np.int32)
    bits = (y > node.attrs["act_min"]) & (y < node.attrs["act_max"])
    return [np.packbits(bits, bitorder="little")]


def _mask_grad(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """g * bit(mask); with ``error_bits`` B the layer's error as int{B} codes and exponent
    (``runtime/grad_quant.py``)."""
    g = values[node.inputs[0]]
    bits = np.unpackbits(values[node.inputs[1]], bitorder="little", count=g.size).astype(bool)
    d = np.where(bits.reshape(g.shape), g, F32(0.0)).astype(F32)
    b = int(node.attrs.get("error_bits", 0))
    if not b:
        return [d]
    q, e = quantize_error(d, b)
    return [q.astype(f"int{b}"), np.array([e], np.int32)]


def _error(node: Node, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """The error a backward node reads (its first input): with ``error_bits`` d^ = codes * 2^e,
    the exponent being its last input."""
    if not node.attrs.get("error_bits"):
        return values[node.inputs[0]]
    return dequantize_error(values[node.inputs[0]], int(values[node.inputs[-1]][0]))


def _conv_geometry(node: Node):
    sh, sw = node.attrs.get("stride", (1, 1))
    top, left, bottom, right = node.attrs.get("padding", (0, 0, 0, 0))
    return sh, sw, top, left, bottom, right


def _conv_grad_input(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    g = _error(node, values)[0]
    w_t = graph.tensors[node.inputs[1]]
    w = values[node.inputs[1]].astype(F32)
    ws = w_t.quant.scales().astype(F32)
    _, h, wd, c_in = node.attrs["input_shape"]
    oh, ow, c_out = g.shape
    c_out, kh, kw, per_group = w.shape
    groups = int(node.attrs.get("groups", 1))
    out_per_group = c_out // groups
    sh, sw, top, left, bottom, right = _conv_geometry(node)
    gs = (g * ws).astype(F32)  # gs = grad_output * weight_scale[oc]
    pad = np.zeros((h + top + bottom + sh, wd + left + right + sw, c_in), dtype=F32)
    # Per input element the C kernel adds in (oy, ox, oc) ascending order; for a fixed element
    # oy ascending <=> ky descending, so looping ky, kx descending then oc ascending and
    # vectorising over positions adds in exactly that order.
    dw = depthwise(groups, c_in, w.shape)
    for ky in reversed(range(kh)):
        for kx in reversed(range(kw)):
            view = pad[ky: ky + oh * sh: sh, kx: kx + ow * sw: sw]
            if dw:
                view += (gs * w[:, ky, kx, 0]).astype(F32)
                continue
            for oc in range(c_out):
                gi = oc // out_per_group
                view[:, :, gi * per_group:(gi + 1) * per_group] += (gs[:, :, oc, None] * w[oc, ky, kx]).astype(F32)
    return [pad[top: top + h, left: left + wd][None].astype(F32)]


def _conv_grad_weight(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    g = _error(node, values)[0]
    x_t = graph.tensors[node.inputs[1]]
    x = _deq_x(values[node.inputs[1]][0], x_t.quant.z)
    channels = list(node.attrs["channels"])
    kh, kw, per_group = node.attrs["kernel"]
    groups = int(node.attrs.get("groups", 1))
    c_out = g.shape[2]
    out_per_group = c_out // groups
    x_channels = node.attrs.get("x_channels")
    sh, sw, top, left, bottom, right = _conv_geometry(node)
    oh, ow = g.shape[:2]
    xp = np.pad(x, ((top, bottom + sh), (left, right + sw), (0, 0)))
    # Input channel positions (in the saved tensor) each kept channel reads.
    cols = []
    for oc in channels:
        first = (oc // out_per_group) * per_group
        wanted = range(first, first + per_group)
        cols.append([x_channels.index(c) for c in wanted] if x_channels is not None else list(wanted))
    cols = np.asarray(cols)  # [K, per_group]
    gk = g[:, :, channels]  # [oh, ow, K]
    exact = bool(node.attrs.get("error_bits"))  # integer error: the sum is exact (float64), rounded once
    acc = np.zeros((len(channels), kh, kw, per_group), dtype=np.float64 if exact else F32)
    for oy in range(oh):
        for ox in range(ow):
            patch = xp[oy * sh: oy * sh + kh, ox * sw: ox * sw + kw]  # [kh, kw, C]
            term = gk[oy, ox][:, None, None, None].astype(acc.dtype) * patch[:, :, cols].transpose(2, 0, 1, 3)
            acc += term.astype(acc.dtype)
    return [(exact_f32(acc) * F32(x_t.quant.s)).astype(F32)]


def _fc_grad_input(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    g = _error(node, values)[0]
    w_t = graph.tensors[node.inputs[1]]
    w = values[node.inputs[1]].astype(F32)
    gs = (g * w_t.quant.scales().astype(F32)).astype(F32)
    out = np.zeros(w.shape[1], dtype=F32)
    for o in range(w.shape[0]):
        out = (out + (gs[o] * w[o]).astype(F32)).astype(F32)
    return [out[None]]


def _fc_grad_weight(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    g = _error(node, values)[0]
    x_t = graph.tensors[node.inputs[1]]
    channels = list(node.attrs["channels"])
    if node.attrs.get("error_bits"):  # integer error: float32(d^ * (x_q - z_x)) (exact) * s_x
        prod = g[channels][:, None].astype(np.float64) * _deq_x(values[node.inputs[1]][0], x_t.quant.z)[None, :]
        return [(exact_f32(prod) * F32(x_t.quant.s)).astype(F32)]
    xr = (_deq_x(values[node.inputs[1]][0], x_t.quant.z) * F32(x_t.quant.s)).astype(F32)
    return [(g[channels][:, None] * xr[None, :]).astype(F32)]


def _bias_grad(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    g = _error(node, values)
    flat = g.reshape(-1, g.shape[-1])
    if node.attrs.get("error_bits"):  # integer error: float32 of the exact sum of d^
        return [exact_f32(flat.astype(np.float64).sum(axis=0))]
    acc = np.zeros(g.shape[-1], dtype=F32)
    for row in flat:  # s ascending from 0.0f
        acc = (acc + row).astype(F32)
    return [acc]


def _avg_pool_grad(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    g = values[node.inputs[0]]
    shape = tuple(node.attrs["input_shape"])
    return [np.broadcast_to((g / F32(shape[1] * shape[2])).astype(F32), shape).copy()]


def _grad_accumulate(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return [(values[node.inputs[0]] + values[node.inputs[1]]).astype(F32)]


def _slice_channels(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return [values[node.inputs[0]][..., list(node.attrs["channels"])].copy()]


def optimizer_state_values(graph: Graph) -> dict[str, np.ndarray]:
    """Zeroed optimizer state of every update of a training graph (what ``mt_init`` leaves), keyed
    "<tensor>:accum" / "<tensor>:momentum"; pass them to ``run_training_graph`` with the parameters."""
    from microtrain.runtime.rounding import optimizer_state

    out = {}
    for node in graph.nodes:
        if node.op in (Op.UPDATE_WEIGHT, Op.UPDATE_BIAS):
            for kind, size in optimizer_state(node, graph).items():
                out[f"{node.inputs[0]}:{kind}"] = np.zeros(size // 4, dtype=F32)
    return out


def _update(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The COMMON update rule on the kept channels, via the one Python copy in runtime/rounding.py,
    after the optimizer state step (accumulation over K samples, momentum) when the node has one.
    The state arrays in ``values`` ("<tensor>:accum", "<tensor>:momentum") are updated in place."""
    from microtrain.runtime.rounding import accumulate_scale, optimizer_direction

    p = values[node.inputs[0]]
    g = values[node.inputs[1]]
    lr = F32(values[node.inputs[2]][0])
    factors = np.asarray(node.attrs["factors"], dtype=F32)
    kind = "weight" if node.op == Op.UPDATE_WEIGHT else "bias"
    k, mu = int(node.attrs.get("accumulate", 1)), float(node.attrs.get("momentum", 0.0))
    if k > 1 or mu > 0:
        name = node.inputs[0]
        accum = values[f"{name}:accum"].reshape(g.shape) if k > 1 else None
        mom = values[f"{name}:momentum"].reshape(g.shape) if mu > 0 else None
        g = optimizer_direction(g, accum, bool(values.get("__apply__", True)), float(accumulate_scale(k)), mom, mu)
        if g is None:
            return [p]
    out = p.copy()
    per_channel = int(np.prod(p.shape[1:], dtype=np.int64)) if p.ndim > 1 else 1
    for row, oc in enumerate(node.attrs["channels"]):
        index = np.arange(per_channel, dtype=np.int64).reshape(p[oc].shape) + oc * per_channel
        out[oc] = apply_update(p[oc], g[row], float(lr), factors[oc], kind, node.attrs.get("rounding", "nearest"),
                               int(node.attrs.get("seed", 0)), int(values.get("__step__", 0)),
                               int(node.attrs["tensor_id"]), index)
    return [out]


def _inverted_bottleneck_grad(node: Node, graph: Graph, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """Exactly the block's original backward nodes, in their order (``ir/block_grads.py``)."""
    local: dict[str, np.ndarray] = {}

    class _Env(dict):
        def __missing__(self, key: str) -> np.ndarray:
            return values[key]

    env = _Env()
    for sub in sub_nodes(node):
        for name, arr in zip(sub.outputs, TRAINING_EVAL_RULES[sub.op](sub, graph, env), strict=True):
            env[name] = arr
            local[name] = arr
    outs = node.attrs["outputs"]
    got = [local[outs[r]] for r in OUTPUT_ROLES if outs.get(r) is not None]
    return got + [np.zeros(int(node.attrs["scratch_bytes"]), dtype=np.int8)]


TRAINING_EVAL_RULES: dict[Op, EvalRule] = {
    Op.LOSS_GRAD: _loss_grad,
    Op.MSE_GRAD: _mse_grad,
    Op.CLAMP_MASK: _clamp_mask,
    Op.MASK_GRAD: _mask_grad,
    Op.CONV2D_GRAD_INPUT: _conv_grad_input,
    Op.CONV2D_GRAD_WEIGHT: _conv_grad_weight,
    Op.FC_GRAD_INPUT: _fc_grad_input,
    Op.FC_GRAD_WEIGHT: _fc_grad_weight,
    Op.BIAS_GRAD: _bias_grad,
    Op.AVG_POOL_GRAD: _avg_pool_grad,
    Op.GRAD_ACCUMULATE: _grad_accumulate,
    Op.SLICE_CHANNELS: _slice_channels,
    Op.UPDATE_WEIGHT: _update,
    Op.UPDATE_BIAS: _update,
    Op.INVERTED_BOTTLENECK_GRAD: _inverted_bottleneck_grad,
    **{Op[name]: rule for name, rule in WINDOW_GRAD_EVAL_RULES.items()},  # pools, PAD, CONCAT
}

ALL_EVAL_RULES: dict[Op, EvalRule] = {**EVAL_RULES, **TRAINING_EVAL_RULES}
"""Forward (reference) + training rules: every op a training graph may contain (the registry's
"eval" table)."""


def run_training_graph(graph: Graph, feeds: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray] | None = None,
                       step: int = 0, verify: bool = True, apply: bool = True) -> dict[str, np.ndarray]:
    """Evaluate a training graph once; returns every value (parameters after their update).

    ``params`` overrides constant values (the current trainable weights between steps) and holds
    the optimizer state (``optimizer_state_values``), which the updates modify in place. ``step`` is
    the update counter (of the rounding hash), ``apply`` False on the samples of an accumulating
    step before the K-th (their gradients are only added up).
    """
    if verify:
        verify_graph(graph)
    values: dict[str, np.ndarray] = {n: t.data for n, t in graph.tensors.items() if t.is_const}
    values.update(params or {})
    values.update({k: np.asarray(v) for k, v in feeds.items()})
    values["__step__"] = np.asarray(step)
    values["__apply__"] = np.asarray(apply)
    for node in graph.nodes:
        rule = ALL_EVAL_RULES.get(node.op)
        if rule is None:
            raise NotImplementedError(f"no evaluation rule for op {node.op.value} (node {node.name!r})")
        for name, arr in zip(node.outputs, rule(node, graph, values), strict=True):
            values[name] = arr
    return values
