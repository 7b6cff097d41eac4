"""The logits of a classifier graph: its output, or the input of the int8 SOFTMAX that ends it.

An imported .tflite classifier usually ends in SOFTMAX (TFLM's int8 probabilities), which
inference keeps so that its outputs are TFLM's bit for bit. Training takes the logits
before it: ``logits_graph`` drops that last SOFTMAX (the loss is a float softmax
cross-entropy on the dequantized logits), and the argmax of the int8 probabilities is the
argmax of the logits up to ties between classes the int8 softmax cannot tell apart.
"""

from __future__ import annotations

from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import Op


def trailing_softmax(graph: Graph) -> Node | None:
    """The SOFTMAX node producing the graph's single output, if there is one."""
    if len(graph.outputs) != 1:
        return None
    node = graph.producer(graph.outputs[0])
    if node is None or node.op is not Op.SOFTMAX or graph.consumers(graph.outputs[0]):
        return None
    return node


def logits_name(graph: Graph) -> str:
    node = trailing_softmax(graph)
    return node.inputs[0] if node is not None else graph.outputs[0]


def logits_graph(graph: Graph) -> Graph:
    """``graph`` without its trailing SOFTMAX (unchanged when it has none): its output is the logits."""
    node = trailing_softmax(graph)
    if node is None:
        return graph
    tensors = {k: v for k, v in graph.tensors.items() if k != node.outputs[0]}
    nodes = tuple(n for n in graph.nodes if n is not node)
    return graph.replace(tensors=tensors, nodes=nodes, outputs=(node.inputs[0],))
