"""Pass 3: one in-place SGD update per trained tensor, appended after the whole backward.

That is where a framework's ``optimizer.step()`` puts them (every gradient alive until the
end); ``reorder_updates`` moves them. The update factors are compile-time constants,
computed in float64 and cast once to float32 (COMMON update rule): with QAS
f_c = 1/s_w[c] (weights) and 1/(s_w[c]*s_x) (biases), without QAS s_w[c] and s_w[c]*s_x.
They are indexed by the full output channel, as ``mt_sgd_update_s8`` takes them.
"""

from __future__ import annotations

import numpy as np

from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import Op
from microtrain.ir.verify import verify_graph


def update_factors(graph: Graph, layer: Node, kind: str, qas: bool) -> list[float]:
    x, w = graph.tensors[layer.inputs[0]], graph.tensors[layer.inputs[1]]
    s = w.quant.scales()
    if kind == "bias":
        s = s * x.quant.s
    f = 1.0 / s if qas else s
    return [float(v) for v in np.asarray(f, dtype=np.float64).astype(np.float32)]


def insert_updates(graph: Graph) -> Graph:
    info = graph.meta["training"]
    nodes = list(graph.nodes)
    for tensor_id, t in enumerate(info["trained"]):
        layer = graph.node(t["layer"])
        op = Op.UPDATE_WEIGHT if t["kind"] == "weight" else Op.UPDATE_BIAS
        nodes.append(Node(f"update:{t['name']}", op, (t["name"], info["grads"][t["name"]], "lr"), (t["name"],),
                          {"in_place": True, "channels": tuple(range(graph.tensors[t["name"]].shape[0])),
                           "factors": tuple(update_factors(graph, layer, t["kind"], info["qas"])),
                           "tensor_id": tensor_id, "rounding": info["rounding"], "seed": info["seed"],
                           "layer": t["layer"]}))
    return verify_graph(graph.replace(nodes=tuple(nodes)))
