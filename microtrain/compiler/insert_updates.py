"""Pass 3: one in-place SGD update per trained tensor, appended after the whole backward.

That is where a framework's ``optimizer.step()`` puts them (every gradient alive until the
end); ``reorder_updates`` moves them. The update factors are compile-time constants,
computed in float64 and cast once to float32 by ``runtime.rounding.update_factors`` (the
COMMON update rule, shared with the simulator's optimizers).
They are indexed by the full output channel, as ``mt_sgd_update_s8`` takes them.
``accumulate`` (K) and ``momentum`` (mu) say which optimizer state the update keeps
(``runtime/rounding.optimizer_state``): with K > 1 a float per kept element summing the
gradients of K samples, with mu > 0 a float per kept element of momentum; both live in RAM
beside the trained tensors, across steps.
"""

from __future__ import annotations

from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import Op
from microtrain.ir.verify import verify_graph
from microtrain.runtime.rounding import update_factors


def layer_factors(graph: Graph, layer: Node, kind: str, qas: bool) -> list[float]:
    """The factors of ``layer``'s weight or bias (``runtime.rounding.update_factors``, the one statement)."""
    x, w = graph.tensors[layer.inputs[0]], graph.tensors[layer.inputs[1]]
    return [float(v) for v in update_factors(w.quant.scales(), x.quant.s, kind, qas)]


def insert_updates(graph: Graph) -> Graph:
    info = graph.meta["training"]
    nodes = list(graph.nodes)
    for tensor_id, t in enumerate(info["trained"]):
        layer = graph.node(t["layer"])
        op = Op.UPDATE_WEIGHT if t["kind"] == "weight" else Op.UPDATE_BIAS
        nodes.append(Node(f"update:{t['name']}", op, (t["name"], info["grads"][t["name"]], "lr"), (t["name"],),
                          {"in_place": True, "channels": tuple(range(graph.tensors[t["name"]].shape[0])),
                           "factors": tuple(layer_factors(graph, layer, t["kind"], info["qas"])),
                           "tensor_id": tensor_id, "rounding": info["rounding"], "seed": info["seed"],
                           "layer": t["layer"], "accumulate": int(info.get("accumulate", 1)),
                           "momentum": float(info.get("momentum", 0.0))}))
    return verify_graph(graph.replace(nodes=tuple(nodes)))
