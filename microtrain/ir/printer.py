"""A readable, stable text form of a Graph (tests compare printed graphs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: graph.py prints itself with this module
    from microtrain.ir.graph import Graph, Tensor


def format_type(t: Tensor) -> str:
    q = ""
    if t.quant is not None:
        if t.quant.is_per_channel:
            q = f" q(per-channel[{len(t.quant.scale)}])"
        else:
            q = f" q({t.quant.scale[0]:.6g},{t.quant.zero_point[0]})"
    const = " const" if t.is_const else ""
    return f"{t.dtype}{list(t.shape)}{q}{const}"


def format_attrs(attrs: dict) -> str:
    parts = []
    for k in sorted(attrs):
        v = attrs[k]
        if isinstance(v, (list, tuple)):
            v = "x".join(str(e) for e in v)
        parts.append(f"{k}={v}")
    return " ".join(parts)


def format_graph(graph: Graph) -> str:
    lines = ["graph(" + ", ".join(f"{n}: {format_type(graph.tensors[n])}" for n in graph.inputs) + ") {"]
    for node in graph.nodes:
        outs = ", ".join(f"{o}: {format_type(graph.tensors[o])}" for o in node.outputs)
        attrs = format_attrs(dict(node.attrs))
        lines.append(f"  {outs} = {node.op.value}({', '.join(node.inputs)}){' ' + attrs if attrs else ''}"
                     f"  # {node.name}")
    lines.append("  return " + ", ".join(graph.outputs))
    lines.append("}")
    return "\n".join(lines)
