"""The int8 graph IR: ops, tensors, graphs, verifier, printer, serialisation."""

from microtrain.ir.graph import DTYPE_BYTES, Graph, GraphBuilder, Node, QParams, Tensor
from microtrain.ir.ops import FLOAT_OPS, INT8_OPS, WEIGHTED_OPS, Op
from microtrain.ir.printer import format_graph
from microtrain.ir.serialize import ModelFileError, load_graph, save_graph
from microtrain.ir.verify import IRError, conv_output_hw, verify_graph

__all__ = [
    "DTYPE_BYTES", "FLOAT_OPS", "INT8_OPS", "WEIGHTED_OPS", "Graph", "GraphBuilder", "IRError",
    "ModelFileError", "Node", "Op", "QParams", "Tensor", "conv_output_hw", "format_graph",
    "load_graph", "save_graph", "verify_graph",
]
