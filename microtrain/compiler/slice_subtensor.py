"""Pass 5: restrict sub-tensor weight updates to the scheme's kept output channels.

The weight gradient is computed only for the kept channels (its buffer shrinks to K rows)
and the update touches only them. For a depthwise conv, kept output channel c reads only
input channel c, so instead of keeping the whole input alive until the backward, a
SLICE_CHANNELS right after the input is produced saves just the kept channels.
"""

from __future__ import annotations

import dataclasses

from microtrain.ir.conv_kinds import depthwise as is_depthwise_conv
from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import Op
from microtrain.ir.verify import verify_graph


def slice_subtensor(graph: Graph) -> Graph:
    info = graph.meta["training"]
    tensors = dict(graph.tensors)
    nodes = list(graph.nodes)
    index = {n.name: i for i, n in enumerate(nodes)}
    inserts: list[tuple[str | None, Node]] = []  # (insert after this node, node)
    for t in info["trained"]:
        if t["kind"] != "weight":
            continue
        w = graph.tensors[t["name"]]
        kept = tuple(t["channels"])
        if kept == tuple(range(w.shape[0])):
            continue
        upd_i = index[f"update:{t['name']}"]
        upd = nodes[upd_i]
        grad = upd.inputs[1]
        gw_i = index[graph.producer(grad).name]
        gw = nodes[gw_i]
        tensors[grad] = dataclasses.replace(tensors[grad], shape=(len(kept),) + w.shape[1:])
        nodes[upd_i] = dataclasses.replace(upd, attrs={**upd.attrs, "channels": kept})
        attrs = {**gw.attrs, "channels": kept}
        inputs = gw.inputs
        x = graph.tensors[gw.inputs[1]]
        depthwise = gw.op == Op.CONV2D_GRAD_WEIGHT and is_depthwise_conv(attrs["groups"], x.shape[3], w.shape)
        if depthwise:
            sliced = f"saved.{x.name}@{gw.attrs['layer']}"
            tensors[sliced] = dataclasses.replace(x, name=sliced, shape=x.shape[:3] + (len(kept),))
            producer = graph.producer(x.name)
            inserts.append((producer.name if producer else None,
                            Node(f"slice:{sliced}", Op.SLICE_CHANNELS, (x.name,), (sliced,), {"channels": kept})))
            inputs = (gw.inputs[0], sliced, *gw.inputs[2:])  # an integer error's exponent stays last
            attrs["x_channels"] = kept
        nodes[gw_i] = dataclasses.replace(gw, inputs=inputs, attrs=attrs)
    for after, node in inserts:
        pos = 0 if after is None else next(i for i, n in enumerate(nodes) if n.name == after) + 1
        nodes.insert(pos, node)
    return verify_graph(graph.replace(tensors=tensors, nodes=tuple(nodes)))
