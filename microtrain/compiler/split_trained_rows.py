"""Pass: a partially trained weight keeps only its trained rows in RAM, the rest in flash.

A sub-tensor update trains some output channels of a weight; OHWI rows are contiguous per
output channel, so the trained rows can live in a RAM array and the frozen rows in a const
(flash) array, with a const table of row pointers for the kernels that read the whole
weight. Done for weights whose every reader takes such a table: the pointwise forward and
input-gradient kernels (``mt_pointwise_conv2d_rows_s8``, ``..._grad_input_rows_f32``);
the weight-gradient kernel never reads the weight and the update kernel works on the sliced
storage. Marks the UPDATE_WEIGHT node ``ram_rows``; the planner counts only those rows as
trained bytes in RAM, the code generator emits the split storage. Results are unchanged:
the kernels read the same bytes from two places.
"""

from __future__ import annotations

import dataclasses

from microtrain.ir.conv_kinds import is_pointwise
from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import Op
from microtrain.ir.verify import verify_graph


def _reads_rows(graph: Graph, node: Node, weight: str) -> bool:
    """Whether ``node`` can read ``weight`` through a row-pointer table (or does not read it)."""
    if node.op == Op.UPDATE_WEIGHT:
        return True
    if node.op == Op.CONV2D and node.inputs[1] == weight:
        return "band" not in node.attrs and is_pointwise(node, graph)
    if node.op == Op.CONV2D_GRAD_INPUT:
        return is_pointwise(graph.node(node.attrs["layer"]), graph)
    return False


def ram_rows(graph: Graph) -> dict[str, tuple[int, ...]]:
    """Weights stored split (marked by this pass): name -> the kept (RAM) output channels."""
    return {n.inputs[0]: tuple(n.attrs["channels"]) for n in graph.nodes
            if n.op == Op.UPDATE_WEIGHT and n.attrs.get("ram_rows")}


def stored_bytes(graph: Graph, name: str, split: dict[str, tuple[int, ...]] | None = None) -> int:
    """RAM bytes of a trained tensor: the kept rows of a split weight, else the whole tensor."""
    t = graph.tensors[name]
    split = ram_rows(graph) if split is None else split
    return t.nbytes // t.shape[0] * len(split[name]) if name in split else t.nbytes


def split_trained_rows(graph: Graph) -> Graph:
    nodes = list(graph.nodes)
    for i, upd in enumerate(nodes):
        if upd.op != Op.UPDATE_WEIGHT:
            continue
        w = upd.inputs[0]
        kept = tuple(upd.attrs["channels"])
        if len(kept) == graph.tensors[w].shape[0]:
            continue
        readers = [n for n in nodes if w in n.inputs]
        if all(_reads_rows(graph, n, w) for n in readers):
            nodes[i] = dataclasses.replace(upd, attrs={**upd.attrs, "ram_rows": True})
    return verify_graph(graph.replace(nodes=tuple(nodes)))
