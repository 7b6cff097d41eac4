"""The int8 graph IR: ops, tensors, graphs, the op registry, verifier, printer, serialisation.

Importing ``microtrain.ir`` loads the op registry (``ir/registry.py``) explicitly: every op's
shape rule is reachable with nothing else imported, and the registry names the one table of
each other kind of rule (evaluation, simulator, VJP, C emission, buffer size, cost).
"""

from microtrain.ir import registry
from microtrain.ir.graph import DTYPE_BYTES, Graph, GraphBuilder, Node, QParams, Tensor
from microtrain.ir.ops import FLOAT_OPS, INT8_OPS, WEIGHTED_OPS, Op
from microtrain.ir.printer import format_graph
from microtrain.ir.serialize import ModelFileError, load_graph, save_graph
from microtrain.ir.verify import IRError, conv_output_hw, verify_graph

__all__ = [
    "DTYPE_BYTES", "FLOAT_OPS", "INT8_OPS", "WEIGHTED_OPS", "Graph", "GraphBuilder", "IRError",
    "ModelFileError", "Node", "Op", "QParams", "Tensor", "conv_output_hw", "format_graph",
    "load_graph", "save_graph", "registry", "verify_graph",
]
