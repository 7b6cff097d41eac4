"""VJP rules of the window and copy ops (AVG_POOL2D, MAX_POOL2D, PAD, CONCAT), for autodiff.

Same signature as ``differentiate.VJP_RULES`` (which includes these): ``rule(node, graph, g,
wants, em) -> [cotangent | None per input]``. Rounding is straight-through, as everywhere:

* AVG_POOL2D -> AVG_POOL2D_GRAD (g / n over each window); MAX_POOL2D -> MAX_POOL2D_GRAD on
  the saved int8 input (g to each window's first maximum). A fused clamp narrower than int8
  masks g first (CLAMP_MASK / MASK_GRAD, as for a conv); with the whole int8 range the pool
  is linear (an average or a maximum of int8 values cannot saturate), so nothing is masked;
* PAD -> PAD_GRAD (the inner block); CONCAT -> one CONCAT_GRAD per input (its slice).
"""

from __future__ import annotations

from microtrain.ir.buffer_sizes import clamp_mask_get_buffer_size as mask_bytes
from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import Op


def _clamped(node: Node, graph: Graph, g: str, em) -> str:
    lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
    if (lo, hi) == (-128, 127):
        return g
    y = graph.tensors[node.outputs[0]]
    mask = em.emit(f"mask.{node.name}", Op.CLAMP_MASK, (y.name,), (mask_bytes(y.size),), "uint8",
                   act_min=lo, act_max=hi)
    return em.emit(f"dpre.{node.name}", Op.MASK_GRAD, (g, mask), y.shape, "float32")


def _pool_attrs(node: Node) -> dict:
    return {k: node.attrs[k] for k in ("filter", "stride", "padding", "count_include_pad") if k in node.attrs}


def _avg_pool2d(node: Node, graph: Graph, g: str, wants, em) -> list[str | None]:
    x = graph.tensors[node.inputs[0]]
    gp = _clamped(node, graph, g, em)
    return [em.emit(f"d.{x.name}@{node.name}", Op.AVG_POOL2D_GRAD, (gp,), x.shape, "float32",
                    input_shape=x.shape, layer=node.name, **_pool_attrs(node))]


def _max_pool2d(node: Node, graph: Graph, g: str, wants, em) -> list[str | None]:
    x = graph.tensors[node.inputs[0]]
    gp = _clamped(node, graph, g, em)
    return [em.emit(f"d.{x.name}@{node.name}", Op.MAX_POOL2D_GRAD, (gp, x.name), x.shape, "float32",
                    input_shape=x.shape, layer=node.name, **_pool_attrs(node))]


def _pad(node: Node, graph: Graph, g: str, wants, em) -> list[str | None]:
    x = graph.tensors[node.inputs[0]]
    return [em.emit(f"d.{x.name}@{node.name}", Op.PAD_GRAD, (g,), x.shape, "float32", pads=node.attrs["pads"])]


def _concat(node: Node, graph: Graph, g: str, wants, em) -> list[str | None]:
    axis = int(node.attrs["axis"])
    out: list[str | None] = []
    offset = 0
    for name, want in zip(node.inputs, wants, strict=True):
        x = graph.tensors[name]
        size = x.shape[axis]
        out.append(em.emit(f"d.{name}@{node.name}", Op.CONCAT_GRAD, (g,), x.shape, "float32", axis=axis,
                           offset=offset, size=size) if want else None)
        offset += size
    return out


WINDOW_VJP_RULES = {Op.AVG_POOL2D: _avg_pool2d, Op.MAX_POOL2D: _max_pool2d, Op.PAD: _pad, Op.CONCAT: _concat}
