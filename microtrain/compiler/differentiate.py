"""Pass 2: reverse-mode autodiff at compile time, from the loss toward the trained tensors.

``VJP_RULES[op](node, graph, g, wants, em) -> [cotangent name | None per input]`` appends
the backward nodes of one forward node through the emitter ``em``; ``g`` is the name of the
cotangent of the node's output (real-valued fp32 gradient). The walk is the Autodidax one:
nodes in reverse order, cotangents of a tensor summed (GRAD_ACCUMULATE) once all of its
consumers are done. Only tensors on a path from a trained tensor to the loss get a
cotangent, so nothing earlier than the earliest updated layer is differentiated and frozen
weights never get a gradient. Weight gradients cover all output channels here;
``slice_subtensor`` restricts them to the kept ones.

The clamp derivative is ``act_min < y < act_max`` on the int8 output (CLAMP_MASK, packed
1-bit), applied to the incoming gradient (MASK_GRAD) -- for every CONV2D, FC and ADD,
including those whose range is the whole int8 range (saturation then blocks the gradient).
GLOBAL_AVG_POOL is treated as linear: an average of int8 values cannot saturate.

With ``grad_dtype`` int8 / int16 the error of each CONV2D / FC is held as integer codes with a
power-of-two scale (``runtime/grad_quant.py``): its MASK_GRAD carries ``error_bits`` (8 or 16)
and outputs the int8/int16 codes and their exponent (int32 [1]); the layer's input, weight and
bias gradients carry ``error_bits`` too and take the codes first and the exponent last.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from microtrain.compiler.build_training_graph import CompileError
from microtrain.compiler.vjp_window import WINDOW_VJP_RULES
from microtrain.ir.buffer_sizes import clamp_mask_get_buffer_size as mask_bytes
from microtrain.ir.graph import Graph, Node, QParams, Tensor
from microtrain.ir.ops import TRAINING_OPS, Op
from microtrain.ir.verify import verify_graph
from microtrain.runtime.grad_quant import error_bits


class Emitter:
    """Collects the new tensors and nodes of the backward graph, naming them uniquely."""

    def __init__(self, graph: Graph, error_bits: int = 0) -> None:
        self.graph = graph
        self.error_bits = error_bits  # bits of the conv/FC error codes (0: fp32 errors)
        self.tensors: dict[str, Tensor] = dict(graph.tensors)
        self.nodes: list[Node] = []

    def emit(self, name: str, op: Op, inputs: tuple[str, ...], out_shape: tuple[int, ...], dtype: str,
             quant=None, **attrs) -> str:
        out = name
        k = 1
        while out in self.tensors:
            k += 1
            out = f"{name}#{k}"
        self.tensors[out] = Tensor(out, tuple(int(d) for d in out_shape), dtype, quant)
        self.nodes.append(Node(f"bwd:{out}", op, inputs, (out,), attrs))
        return out


VjpRule = Callable[[Node, Graph, str, tuple[bool, ...], Emitter], list[str | None]]


def _error_attrs(em: Emitter) -> dict:
    """``error_bits`` of a conv/FC error and of the gradients formed from it (none for fp32)."""
    return {"error_bits": em.error_bits} if em.error_bits else {}


def _masked(node: Node, graph: Graph, g: str, em: Emitter) -> str:
    """The clamp derivative: g * (act_min < y < act_max), y the node's int8 output."""
    y = graph.tensors[node.outputs[0]]
    lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
    mask = em.emit(f"mask.{node.name}", Op.CLAMP_MASK, (y.name,), (mask_bytes(y.size),), "uint8",
                   act_min=lo, act_max=hi)
    return em.emit(f"dpre.{node.name}", Op.MASK_GRAD, (g, mask), y.shape, "float32")


def _error(node: Node, graph: Graph, g: str, em: Emitter) -> tuple[str, tuple[str, ...]]:
    """A conv/FC layer's error: (the masked gradient, ()) with fp32 errors; with integer errors
    (the codes, (their exponent,)), the exponent being the last input of every consumer."""
    if not em.error_bits:
        return _masked(node, graph, g, em), ()
    y = graph.tensors[node.outputs[0]]
    lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
    mask = em.emit(f"mask.{node.name}", Op.CLAMP_MASK, (y.name,), (mask_bytes(y.size),), "uint8",
                   act_min=lo, act_max=hi)
    # The codes' static quantization is the unit (scale 1, zero 0): their real value is code * 2^e
    # with e computed at run time into the exponent tensor.
    unit = QParams.per_tensor(1.0, 0) if em.error_bits == 8 else None
    codes = em.emit(f"dpre.{node.name}", Op.MASK_GRAD, (g, mask), y.shape, f"int{em.error_bits}", unit,
                    error_bits=em.error_bits)
    exponent = f"dexp.{codes}"
    em.tensors[exponent] = Tensor(exponent, (1,), "int32", None)
    em.nodes[-1] = dataclasses.replace(em.nodes[-1], outputs=(codes, exponent))
    return codes, (exponent,)


def _conv2d(node: Node, graph: Graph, g: str, wants: tuple[bool, ...], em: Emitter) -> list[str | None]:
    x, w, _ = (graph.tensors[n] for n in node.inputs)
    gp, ex = _error(node, graph, g, em)
    geo = {"stride": tuple(node.attrs.get("stride", (1, 1))), "padding": tuple(node.attrs.get("padding", (0,) * 4)),
           "groups": int(node.attrs.get("groups", 1))}
    out: list[str | None] = [None, None, None]
    if wants[0]:
        out[0] = em.emit(f"d.{x.name}@{node.name}", Op.CONV2D_GRAD_INPUT, (gp, w.name, *ex), x.shape, "float32",
                         input_shape=x.shape, layer=node.name, **geo, **_error_attrs(em))
    if wants[1]:
        out[1] = em.emit(f"d.{w.name}", Op.CONV2D_GRAD_WEIGHT, (gp, x.name, *ex), w.shape, "float32",
                         channels=tuple(range(w.shape[0])), kernel=tuple(w.shape[1:]), x_channels=None,
                         layer=node.name, **geo, **_error_attrs(em))
    if wants[2]:
        out[2] = em.emit(f"d.{node.inputs[2]}", Op.BIAS_GRAD, (gp, *ex), (w.shape[0],), "float32",
                         layer=node.name, **_error_attrs(em))
    return out


def _fully_connected(node: Node, graph: Graph, g: str, wants: tuple[bool, ...], em: Emitter) -> list[str | None]:
    x, w, _ = (graph.tensors[n] for n in node.inputs)
    gp, ex = _error(node, graph, g, em)
    out: list[str | None] = [None, None, None]
    if wants[0]:
        out[0] = em.emit(f"d.{x.name}@{node.name}", Op.FC_GRAD_INPUT, (gp, w.name, *ex), x.shape, "float32",
                         layer=node.name, **_error_attrs(em))
    if wants[1]:
        out[1] = em.emit(f"d.{w.name}", Op.FC_GRAD_WEIGHT, (gp, x.name, *ex), w.shape, "float32",
                         channels=tuple(range(w.shape[0])), layer=node.name, **_error_attrs(em))
    if wants[2]:
        out[2] = em.emit(f"d.{node.inputs[2]}", Op.BIAS_GRAD, (gp, *ex), (w.shape[0],), "float32",
                         layer=node.name, **_error_attrs(em))
    return out


def _add(node: Node, graph: Graph, g: str, wants: tuple[bool, ...], em: Emitter) -> list[str | None]:
    gp = _masked(node, graph, g, em)  # d(a_real + b_real) = identity on both operands
    return [gp if wants[0] else None, gp if wants[1] else None]


def _global_avg_pool(node: Node, graph: Graph, g: str, wants: tuple[bool, ...], em: Emitter) -> list[str | None]:
    x = graph.tensors[node.inputs[0]]
    return [em.emit(f"d.{x.name}@{node.name}", Op.AVG_POOL_GRAD, (g,), x.shape, "float32", input_shape=x.shape)]


def _reshape(node: Node, graph: Graph, g: str, wants: tuple[bool, ...], em: Emitter) -> list[str | None]:
    x = graph.tensors[node.inputs[0]]
    return [em.emit(f"d.{x.name}@{node.name}", Op.RESHAPE, (g,), x.shape, "float32", shape=x.shape)]


def _dequantize(node: Node, graph: Graph, g: str, wants: tuple[bool, ...], em: Emitter) -> list[str | None]:
    return [g]  # the gradient w.r.t. the real value of the int8 tensor is the gradient of its float copy


def _softmax_cross_entropy(node: Node, graph: Graph, g: str, wants: tuple[bool, ...],
                           em: Emitter) -> list[str | None]:
    logits = graph.tensors[node.inputs[0]]
    return [em.emit(f"d.{logits.name}", Op.LOSS_GRAD, node.inputs, logits.shape, "float32"), None]


def _mean_squared_error(node: Node, graph: Graph, g: str, wants: tuple[bool, ...],
                        em: Emitter) -> list[str | None]:
    pred = graph.tensors[node.inputs[0]]
    return [em.emit(f"d.{pred.name}", Op.MSE_GRAD, node.inputs, pred.shape, "float32"), None]


VJP_RULES: dict[Op, VjpRule] = {
    Op.CONV2D: _conv2d,
    Op.FULLY_CONNECTED: _fully_connected,
    Op.ADD: _add,
    Op.GLOBAL_AVG_POOL: _global_avg_pool,
    Op.RESHAPE: _reshape,
    Op.DEQUANTIZE: _dequantize,
    Op.SOFTMAX_CROSS_ENTROPY: _softmax_cross_entropy,
    **WINDOW_VJP_RULES,  # AVG_POOL2D, MAX_POOL2D, PAD, CONCAT (compiler/vjp_window.py)
    Op.MEAN_SQUARED_ERROR: _mean_squared_error,
}

VJP_EXEMPT = TRAINING_OPS | frozenset(op for op in Op if op.name.startswith("FUSED_")) | {Op.SOFTMAX}
"""Training ops are never differentiated (no second-order gradients); fused ops only ever
replace frozen blocks (compiler/fuse_frozen_blocks.py), through which no gradient flows; an
int8 SOFTMAX only ends a graph, and training takes the logits before it (``ir.logits``)."""


def differentiate(graph: Graph, grad_dtype: str = "fp32") -> Graph:
    """Append the backward nodes; ``meta['training']['grads']`` maps each trained tensor to its gradient,
    ``meta['training']['grad_dtype']`` records the error tensors' type (fp32 | int16 | int8)."""
    info = graph.meta["training"]
    wrt = [t["name"] for t in info["trained"]]
    needs = set(wrt)
    for node in graph.nodes:  # forward: which tensors depend on a trained tensor
        if any(i in needs for i in node.inputs):
            needs.update(node.outputs)
    loss = graph.outputs[0]
    if loss not in needs:
        raise CompileError("the loss does not depend on any trained tensor")
    em = Emitter(graph, error_bits(grad_dtype))
    pending: dict[str, list[str]] = {loss: []}
    for node in reversed(graph.nodes):
        out = node.outputs[0]
        if out not in pending:
            continue
        wants = tuple(i in needs and not (graph.tensors[i].is_const and i not in wrt) for i in node.inputs)
        if not any(wants):
            continue
        rule = VJP_RULES.get(node.op)
        if rule is None:
            raise CompileError(f"op {node.op.value} (node {node.name!r}) has no gradient rule, but the gradient "
                               f"must flow through it; update only layers after it")
        g = _accumulate(pending.pop(out), out, em)
        for name, cot in zip(node.inputs, rule(node, graph, g, wants, em), strict=True):
            if cot is not None:
                pending.setdefault(name, []).append(cot)
    grads = {name: _accumulate(pending.pop(name), name, em) for name in wrt}
    meta = dict(graph.meta)
    meta["training"] = {**info, "grads": grads, "grad_dtype": grad_dtype}
    return verify_graph(graph.replace(tensors=em.tensors, nodes=graph.nodes + tuple(em.nodes), meta=meta))


def _accumulate(cots: list[str], name: str, em: Emitter) -> str:
    if not cots:
        return ""
    total = cots[0]
    for other in cots[1:]:
        total = em.emit(f"dsum.{name}", Op.GRAD_ACCUMULATE, (total, other), em.tensors[total].shape, "float32")
    return total
