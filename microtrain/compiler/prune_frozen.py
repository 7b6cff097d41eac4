"""Pass 4: dead-code elimination of the training graph.

``differentiate`` already gives no gradient to frozen tensors and stops at the earliest
updated layer; this pass removes whatever no update and no graph output needs (e.g. the
gradient of a tensor that only fed a frozen branch) and tensors nothing references, so
no saved activation survives without a reader.
"""

from __future__ import annotations

from microtrain.ir.graph import Graph
from microtrain.ir.ops import UPDATE_OPS
from microtrain.ir.verify import verify_graph


def prune_frozen(graph: Graph) -> Graph:
    needed = set(graph.outputs)
    keep = []
    for node in reversed(graph.nodes):
        if node.op in UPDATE_OPS or any(o in needed for o in node.outputs):
            keep.append(node)
            needed.update(node.inputs)
    keep.reverse()
    used = set(graph.inputs) | set(graph.outputs)
    for node in keep:
        used.update(node.inputs)
        used.update(node.outputs)
    tensors = {n: t for n, t in graph.tensors.items() if n in used}
    return verify_graph(graph.replace(nodes=tuple(keep), tensors=tensors))
