"""The graph-level checks of the verifier, for any table of shape rules.

``check_graph(graph, rules)`` checks every invariant of a Graph: every tensor well formed
(``verify_tensor``), defined once before use, constants with data of their declared shape
and dtype, quantized dtypes with QParams, and every node's outputs exactly what its op's
shape rule computes. ``ir/verify.py`` binds it to the registry's complete ``SHAPE_RULES``;
the fused block's shape rule (``ir/fused_blocks.py``) runs it on the block's own ops.
Errors name the node, the op and the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from microtrain.ir.graph import DTYPES, Graph, Node, Tensor
from microtrain.ir.ops import SAME_QUANT_OPS, Op


class IRError(ValueError):
    """A graph breaks an IR invariant. The message names the node, op and the problem."""


OutSpec = list[tuple[tuple[int, ...], str]]
ShapeRule = Callable[[Node, list[Tensor]], OutSpec]


def fail(node: Node, msg: str) -> IRError:
    return IRError(f"node {node.name!r} ({node.op.value}): {msg}")


def expect(cond: bool, node: Node, msg: str) -> None:
    if not cond:
        raise fail(node, msg)


def arity(node: Node, ins: list[Tensor], n_in: int, n_out: int = 1) -> None:
    expect(len(ins) == n_in, node, f"expects {n_in} inputs, has {len(ins)}")
    expect(len(node.outputs) == n_out, node, f"expects {n_out} outputs, has {len(node.outputs)}")


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
        if q.axis is not None and (not 0 <= q.axis < len(t.shape) or len(q.scale) != t.shape[q.axis]):
            raise IRError(f"tensor {t.name!r}: {len(q.scale)} scales along axis {q.axis} of shape {t.shape}")
        if not all(np.isfinite(s) and s > 0 for s in q.scale):
            raise IRError(f"tensor {t.name!r}: scales must be finite and positive, got {q.scale[:4]}...")
        if t.dtype == "int8" and not all(-128 <= z <= 127 for z in q.zero_point):
            raise IRError(f"tensor {t.name!r}: zero point outside int8 [-128, 127]: {q.zero_point[:4]}")
    if t.data is not None:
        if tuple(t.data.shape) != t.shape:
            raise IRError(f"tensor {t.name!r}: data shape {t.data.shape} != declared {t.shape}")
        if str(t.data.dtype) != t.dtype:
            raise IRError(f"tensor {t.name!r}: data dtype {t.data.dtype} != declared {t.dtype}")
        if t.dtype == "float32" and not np.isfinite(t.data).all():
            raise IRError(f"tensor {t.name!r}: float data holds NaN or infinity")


def check_graph(graph: Graph, rules: Mapping[Op, ShapeRule]) -> Graph:
    """Check every invariant with the shape rules ``rules``; return the graph unchanged."""
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
            raise fail(first_user[name], str(e)) from None
    defined = {n for n, t in graph.tensors.items() if t.is_const} | set(graph.inputs)
    for name in graph.inputs:
        if name not in graph.tensors:
            raise IRError(f"graph input {name!r} is not a tensor of the graph")
    seen_nodes: set[str] = set()
    for node in graph.nodes:
        if node.name in seen_nodes:
            raise fail(node, "node name used twice")
        seen_nodes.add(node.name)
        rule = rules.get(node.op)
        if rule is None:
            raise fail(node, "op has no shape rule")
        for name in node.inputs:
            if name not in graph.tensors:
                raise fail(node, f"input {name!r} is not a tensor of the graph")
            if name not in defined:
                raise fail(node, f"input {name!r} is used before it is computed")
        try:
            specs = rule(node, [graph.tensors[n] for n in node.inputs])
        except IRError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as e:
            # A missing or ill-typed attribute (e.g. a reshape without ``shape``, a stride of
            # one int) is a broken node too, not a crash of the verifier.
            raise fail(node, f"missing or malformed attribute ({type(e).__name__}: {e})") from None
        if len(specs) != len(node.outputs):
            raise fail(node, f"has {len(node.outputs)} outputs, the op computes {len(specs)}")
        for out_name, (shape, dtype) in zip(node.outputs, specs, strict=True):
            if out_name not in graph.tensors:
                raise fail(node, f"output {out_name!r} is not a tensor of the graph")
            out = graph.tensors[out_name]
            if out_name in defined and not node.attrs.get("in_place", False):
                raise fail(node, f"output {out_name!r} is defined twice")
            if out.shape != shape or out.dtype != dtype:
                raise fail(node, f"output {out_name!r} is {out.dtype}{list(out.shape)}, "
                                  f"op computes {dtype}{list(shape)}")
            # Computed int8 tensors are activations: per-tensor (only an in-place weight update
            # writes a per-channel tensor); the executors read their single scale and zero point.
            if (dtype == "int8" and out.quant is not None and out.quant.is_per_channel
                    and not node.attrs.get("in_place", False)):
                raise fail(node, f"output {out_name!r} is an int8 activation and needs per-tensor quantization")
            if node.op in SAME_QUANT_OPS:
                for src in node.inputs:
                    if out.quant != graph.tensors[src].quant:
                        raise fail(node, f"output {out_name!r} must keep the quantization of its input "
                                          f"{src!r} ({node.op.value} copies int8 values, it does not rescale)")
            defined.add(out_name)
    for name in graph.outputs:
        if name not in defined:
            raise IRError(f"graph output {name!r} is never computed")
    return graph
