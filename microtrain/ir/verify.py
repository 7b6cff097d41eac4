"""The IR verifier: run after every pass; names node, op and types when it fails.

``SHAPE_RULES`` is the abstract-evaluation table: for each op, a function that checks the
node's operands and returns the shapes and dtypes its outputs must have. ``verify_graph``
also checks the graph-level invariants: every tensor defined once before use, constants
have data of their declared shape and dtype, quantized dtypes carry QParams.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from microtrain.ir.graph import DTYPES, Graph, Node, Tensor
from microtrain.ir.ops import VIEW_OPS, Op


class IRError(ValueError):
    """A graph breaks an IR invariant. The message names the node, op and the problem."""


OutSpec = list[tuple[tuple[int, ...], str]]
ShapeRule = Callable[[Node, list[Tensor]], OutSpec]


def _fail(node: Node, msg: str) -> IRError:
    return IRError(f"node {node.name!r} ({node.op.value}): {msg}")


def _expect(cond: bool, node: Node, msg: str) -> None:
    if not cond:
        raise _fail(node, msg)


def _arity(node: Node, ins: list[Tensor], n_in: int, n_out: int = 1) -> None:
    _expect(len(ins) == n_in, node, f"expects {n_in} inputs, has {len(ins)}")
    _expect(len(node.outputs) == n_out, node, f"expects {n_out} outputs, has {len(node.outputs)}")


def _per_tensor_int8(node: Node, t: Tensor, role: str) -> None:
    _expect(t.dtype == "int8", node, f"{role} {t.name!r} must be int8, is {t.dtype}")
    _expect(t.quant is not None and not t.quant.is_per_channel, node,
            f"{role} {t.name!r} needs per-tensor quantization")
    _expect(t.quant.scale[0] > 0, node, f"{role} {t.name!r} has non-positive scale {t.quant.scale[0]}")
    _expect(-128 <= t.quant.zero_point[0] <= 127, node,
            f"{role} {t.name!r} zero point {t.quant.zero_point[0]} outside int8")


def _weight_bias(node: Node, w: Tensor, b: Tensor, out_channels: int) -> None:
    _expect(w.dtype == "int8", node, f"weight {w.name!r} must be int8, is {w.dtype}")
    q = w.quant
    _expect(q is not None and q.is_per_channel and q.axis == 0, node,
            f"weight {w.name!r} needs per-channel quantization along axis 0")
    _expect(len(q.scale) == out_channels, node,
            f"weight {w.name!r} has {len(q.scale)} scales for {out_channels} output channels")
    _expect(all(s > 0 and np.isfinite(s) for s in q.scale), node,
            f"weight {w.name!r} has a non-positive or non-finite scale")
    _expect(all(z == 0 for z in q.zero_point), node, f"weight {w.name!r} must be symmetric (zero point 0)")
    _expect(b.dtype == "int32", node, f"bias {b.name!r} must be int32, is {b.dtype}")
    _expect(b.shape == (out_channels,), node,
            f"bias {b.name!r} has shape {b.shape}, expected ({out_channels},)")


def _act_range(node: Node) -> None:
    lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
    _expect(-128 <= lo <= hi <= 127, node, f"activation range [{lo}, {hi}] is not inside int8")


def conv_output_hw(h: int, w: int, kh: int, kw: int, stride: tuple[int, int],
                   padding: tuple[int, int, int, int]) -> tuple[int, int]:
    top, left, bottom, right = padding
    return (h + top + bottom - kh) // stride[0] + 1, (w + left + right - kw) // stride[1] + 1


def _conv2d(node: Node, ins: list[Tensor]) -> OutSpec:
    _arity(node, ins, 3)
    x, w, b = ins
    _per_tensor_int8(node, x, "input")
    _expect(len(x.shape) == 4 and x.shape[0] == 1, node, f"input must be NHWC with batch 1, is {x.shape}")
    _expect(len(w.shape) == 4, node, f"weight must be OHWI, has shape {w.shape}")
    out_c, kh, kw, in_per_group = w.shape
    groups = int(node.attrs.get("groups", 1))
    _expect(groups >= 1 and x.shape[3] % groups == 0 and out_c % groups == 0, node,
            f"groups={groups} does not divide input channels {x.shape[3]} and output channels {out_c}")
    _expect(in_per_group * groups == x.shape[3], node,
            f"weight {w.name!r} expects {in_per_group * groups} input channels, input has {x.shape[3]}")
    _weight_bias(node, w, b, out_c)
    stride = tuple(node.attrs.get("stride", (1, 1)))
    padding = tuple(node.attrs.get("padding", (0, 0, 0, 0)))
    _expect(len(stride) == 2 and min(stride) >= 1, node, f"bad stride {stride}")
    _expect(len(padding) == 4 and min(padding) >= 0, node, f"bad padding {padding}")
    oh, ow = conv_output_hw(x.shape[1], x.shape[2], kh, kw, stride, padding)
    _expect(oh >= 1 and ow >= 1, node, f"kernel {kh}x{kw} larger than padded input {x.shape[1:3]}")
    _act_range(node)
    return [((1, oh, ow, out_c), "int8")]


def _fully_connected(node: Node, ins: list[Tensor]) -> OutSpec:
    _arity(node, ins, 3)
    x, w, b = ins
    _per_tensor_int8(node, x, "input")
    _expect(len(x.shape) == 2 and x.shape[0] == 1, node, f"input must be [1, C], is {x.shape}")
    _expect(len(w.shape) == 2 and w.shape[1] == x.shape[1], node,
            f"weight {w.name!r} shape {w.shape} does not take {x.shape[1]} inputs")
    _weight_bias(node, w, b, w.shape[0])
    _act_range(node)
    return [((1, w.shape[0]), "int8")]


def _add(node: Node, ins: list[Tensor]) -> OutSpec:
    _arity(node, ins, 2)
    a, b = ins
    _per_tensor_int8(node, a, "input a")
    _per_tensor_int8(node, b, "input b")
    _expect(a.shape == b.shape, node, f"operand shapes differ: {a.shape} vs {b.shape}")
    _act_range(node)
    return [(a.shape, "int8")]


def _global_avg_pool(node: Node, ins: list[Tensor]) -> OutSpec:
    _arity(node, ins, 1)
    (x,) = ins
    _per_tensor_int8(node, x, "input")
    _expect(len(x.shape) == 4, node, f"input must be NHWC, is {x.shape}")
    return [((1, 1, 1, x.shape[3]), "int8")]


def _reshape(node: Node, ins: list[Tensor]) -> OutSpec:
    _arity(node, ins, 1)
    (x,) = ins
    shape = tuple(int(d) for d in node.attrs["shape"])
    _expect(int(np.prod(shape)) == x.size, node, f"cannot reshape {x.shape} to {shape}")
    return [(shape, x.dtype)]


def _dequantize(node: Node, ins: list[Tensor]) -> OutSpec:
    _arity(node, ins, 1)
    (x,) = ins
    _per_tensor_int8(node, x, "input")
    return [(x.shape, "float32")]


def _softmax_cross_entropy(node: Node, ins: list[Tensor]) -> OutSpec:
    _arity(node, ins, 2)
    logits, label = ins
    _expect(logits.dtype == "float32" and len(logits.shape) == 2, node,
            f"logits must be float32 [1, K], are {logits.dtype} {logits.shape}")
    _expect(label.dtype == "int32" and label.shape == (1,), node,
            f"label must be int32 [1], is {label.dtype} {label.shape}")
    return [((1,), "float32")]


SHAPE_RULES: dict[Op, ShapeRule] = {
    Op.CONV2D: _conv2d,
    Op.FULLY_CONNECTED: _fully_connected,
    Op.ADD: _add,
    Op.GLOBAL_AVG_POOL: _global_avg_pool,
    Op.RESHAPE: _reshape,
    Op.DEQUANTIZE: _dequantize,
    Op.SOFTMAX_CROSS_ENTROPY: _softmax_cross_entropy,
}


def register_shape_rule(op: Op, rule: ShapeRule) -> None:
    """Lets the compiler add the rules of the backward ops it appends to ``Op``."""
    SHAPE_RULES[op] = rule


def verify_tensor(t: Tensor) -> None:
    if t.dtype not in DTYPES:
        raise IRError(f"tensor {t.name!r}: unknown dtype {t.dtype!r}")
    if any((not isinstance(d, int)) or d < 0 for d in t.shape):
        raise IRError(f"tensor {t.name!r}: bad shape {t.shape}")
    if t.dtype == "int8" and t.quant is None:
        raise IRError(f"tensor {t.name!r}: int8 tensor without quantization parameters")
    if t.quant is not None:
        q = t.quant
        if len(q.scale) != len(q.zero_point):
            raise IRError(f"tensor {t.name!r}: {len(q.scale)} scales but {len(q.zero_point)} zero points")
        if q.axis is None and len(q.scale) != 1:
            raise IRError(f"tensor {t.name!r}: per-tensor quantization with {len(q.scale)} scales")
        if q.axis is not None and (q.axis >= len(t.shape) or len(q.scale) != t.shape[q.axis]):
            raise IRError(f"tensor {t.name!r}: {len(q.scale)} scales along axis {q.axis} of shape {t.shape}")
        if not all(np.isfinite(s) and s > 0 for s in q.scale):
            raise IRError(f"tensor {t.name!r}: scales must be finite and positive, got {q.scale[:4]}...")
    if t.data is not None:
        if tuple(t.data.shape) != t.shape:
            raise IRError(f"tensor {t.name!r}: data shape {t.data.shape} != declared {t.shape}")
        if str(t.data.dtype) != t.dtype:
            raise IRError(f"tensor {t.name!r}: data dtype {t.data.dtype} != declared {t.dtype}")


def verify_graph(graph: Graph) -> Graph:
    """Check every invariant; return the graph unchanged so passes can chain it."""
    # A bad tensor is reported with the first node that reads or writes it, so the message
    # names the node and op (as every other verifier error does) when there is one.
    first_user: dict[str, Node] = {}
    for node in graph.nodes:
        for name in (*node.inputs, *node.outputs):
            first_user.setdefault(name, node)
    for name, t in graph.tensors.items():
        if name != t.name:
            raise IRError(f"tensor registered as {name!r} is named {t.name!r}")
        try:
            verify_tensor(t)
        except IRError as e:
            if name not in first_user:
                raise
            raise _fail(first_user[name], str(e)) from None
    defined = {n for n, t in graph.tensors.items() if t.is_const} | set(graph.inputs)
    for name in graph.inputs:
        if name not in graph.tensors:
            raise IRError(f"graph input {name!r} is not a tensor of the graph")
    seen_nodes: set[str] = set()
    for node in graph.nodes:
        if node.name in seen_nodes:
            raise _fail(node, "node name used twice")
        seen_nodes.add(node.name)
        rule = SHAPE_RULES.get(node.op)
        if rule is None:
            raise _fail(node, "op has no shape rule")
        for name in node.inputs:
            if name not in graph.tensors:
                raise _fail(node, f"input {name!r} is not a tensor of the graph")
            if name not in defined:
                raise _fail(node, f"input {name!r} is used before it is computed")
        try:
            specs = rule(node, [graph.tensors[n] for n in node.inputs])
        except IRError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as e:
            # A missing or ill-typed attribute (e.g. a reshape without ``shape``, a stride of
            # one int) is a broken node too, not a crash of the verifier.
            raise _fail(node, f"missing or malformed attribute ({type(e).__name__}: {e})") from None
        if len(specs) != len(node.outputs):
            raise _fail(node, f"has {len(node.outputs)} outputs, the op computes {len(specs)}")
        for out_name, (shape, dtype) in zip(node.outputs, specs, strict=True):
            if out_name not in graph.tensors:
                raise _fail(node, f"output {out_name!r} is not a tensor of the graph")
            out = graph.tensors[out_name]
            if out_name in defined and not node.attrs.get("in_place", False):
                raise _fail(node, f"output {out_name!r} is defined twice")
            if out.shape != shape or out.dtype != dtype:
                raise _fail(node, f"output {out_name!r} is {out.dtype}{list(out.shape)}, "
                                  f"op computes {dtype}{list(shape)}")
            # Computed int8 tensors are activations: per-tensor (only an in-place weight update
            # writes a per-channel tensor); the executors read their single scale and zero point.
            if (dtype == "int8" and out.quant is not None and out.quant.is_per_channel
                    and not node.attrs.get("in_place", False)):
                raise _fail(node, f"output {out_name!r} is an int8 activation and needs per-tensor quantization")
            if node.op in VIEW_OPS and out.quant != graph.tensors[node.inputs[0]].quant:
                raise _fail(node, f"output {out_name!r} must keep the quantization of its input "
                                  f"{node.inputs[0]!r} ({node.op.value} only reinterprets bytes)")
            defined.add(out_name)
    for name in graph.outputs:
        if name not in defined:
            raise IRError(f"graph output {name!r} is never computed")
    return graph
