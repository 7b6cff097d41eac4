"""Pass 7: apply each update as soon as its gradient exists, so no gradient outlives it.

List scheduling of the backward: walking the backward in its order, a (gradient, update)
pair is emitted as soon as it is legal: the gradient's inputs exist and every other reader
of the parameter has run (write-after-read: the input gradient of the same layer must see
the old weights, as the simulator and fp32 SGD do, so a layer's weight update always comes
after its input gradient). The pair is emitted together, so the weight gradient is born
right before it is consumed. With ``per_channel`` the pair is marked ``chunk=1``: the
generated code computes, applies and discards one output channel's gradient at a time,
and the planner sizes the gradient buffer for one channel.
"""

from __future__ import annotations

import dataclasses

from microtrain.compiler.build_training_graph import forward_end
from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import UPDATE_OPS, Op
from microtrain.ir.verify import verify_graph

CHUNKABLE = frozenset({Op.CONV2D_GRAD_WEIGHT, Op.FC_GRAD_WEIGHT})


def reorder_updates(graph: Graph, per_channel: bool = True) -> Graph:
    start = forward_end(graph)
    forward, backward = list(graph.nodes[:start]), list(graph.nodes[start:])
    producers = {o: n for n in backward for o in n.outputs}
    pairs: list[tuple[Node, Node]] = []
    deferred: set[str] = set()
    for upd in (n for n in backward if n.op in UPDATE_OPS):
        grad = producers[upd.inputs[1]]
        if per_channel and grad.op in CHUNKABLE:
            grad = dataclasses.replace(grad, attrs={**grad.attrs, "chunk": 1})
            upd = dataclasses.replace(upd, attrs={**upd.attrs, "chunk": 1})
        pairs.append((grad, upd))
        deferred.update({grad.name, upd.name})
    rest = [n for n in backward if n.name not in deferred]
    done = {o for n in forward for o in n.outputs} | set(graph.inputs)
    done |= {n for n, t in graph.tensors.items() if t.is_const}
    emitted: list[Node] = []
    readers = {upd.name: [n.name for n in rest if upd.inputs[0] in n.inputs] for _, upd in pairs}
    emitted_names: set[str] = set()

    def flush() -> None:
        for pair in list(pairs):
            grad, upd = pair
            if all(i in done for i in grad.inputs) and all(r in emitted_names for r in readers[upd.name]):
                emitted.extend(pair)
                done.update(grad.outputs)
                pairs.remove(pair)

    flush()
    for node in rest:
        emitted.append(node)
        emitted_names.add(node.name)
        done.update(node.outputs)
        flush()
    if pairs:  # cannot happen for a graph that verified, but never drop an update silently
        raise RuntimeError(f"reorder_updates could not place {[u.name for _, u in pairs]}")
    return verify_graph(graph.replace(nodes=tuple(forward + emitted)))
