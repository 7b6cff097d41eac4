"""Pass 6: keep 1-bit masks instead of activations where only the clamp derivative is needed.

``differentiate`` computes each CLAMP_MASK in the backward, from the int8 output ``y``,
which keeps ``y`` alive from the forward to the backward. When nothing else in the backward
reads ``y`` (no weight gradient needs it as its saved input), the mask is computed right
after ``y`` is produced instead, so the backward holds n/8 bytes instead of n.
"""

from __future__ import annotations

from microtrain.compiler.build_training_graph import forward_end
from microtrain.ir.graph import Graph
from microtrain.ir.ops import Op
from microtrain.ir.verify import verify_graph


def hoist_masks(graph: Graph) -> Graph:
    nodes = list(graph.nodes)
    start = forward_end(graph)
    for mask in [n for n in nodes[start:] if n.op == Op.CLAMP_MASK]:
        y = mask.inputs[0]
        backward_readers = [n for n in nodes[start:] if y in n.inputs and n is not mask]
        if backward_readers:
            continue  # y is saved anyway: reading it in the backward costs nothing extra
        nodes.remove(mask)
        producer = next(i for i, n in enumerate(nodes) if y in n.outputs)
        nodes.insert(producer + 1, mask)
        start += 1
    return verify_graph(graph.replace(nodes=tuple(nodes)))
