"""Run a graph at another input resolution (fully convolutional models + global pooling).

``with_resolution(graph, r)`` re-infers every activation shape from an r x r input with the
verifier's shape rules; weights, quantization and attributes are unchanged (paddings are
explicit attributes, the pool's multiplier follows its input size at run time). Used to
train or evaluate below the model's native 128x128 where time demands.
"""

from __future__ import annotations

import dataclasses

from microtrain.ir.graph import Graph
from microtrain.ir.verify import SHAPE_RULES, verify_graph


def with_resolution(graph: Graph, resolution: int) -> Graph:
    (name,) = graph.inputs
    x = graph.tensors[name]
    if x.shape[1:3] == (resolution, resolution):
        return graph
    if resolution < 8:
        raise ValueError(f"resolution {resolution} is too small (use >= 8)")
    tensors = dict(graph.tensors)
    tensors[name] = dataclasses.replace(x, shape=(x.shape[0], resolution, resolution, x.shape[3]))
    for node in graph.nodes:
        specs = SHAPE_RULES[node.op](node, [tensors[n] for n in node.inputs])
        for out, (shape, _dtype) in zip(node.outputs, specs, strict=True):
            tensors[out] = dataclasses.replace(tensors[out], shape=tuple(shape))
    meta = dict(graph.meta)
    pre = dict(meta.get("preprocess", {}))
    pre["resolution"] = [resolution, resolution]
    meta["preprocess"] = pre
    return verify_graph(graph.replace(tensors=tensors, meta=meta))
