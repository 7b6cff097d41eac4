"""The IR verifier: run after every pass; names node, op and types when it fails.

``verify_graph`` checks a graph against every op's shape rule (``SHAPE_RULES``, the complete
abstract-evaluation table of ``ir/registry.py``) and the graph-level invariants of
``ir/check.py``: every tensor defined once before use, constants with data of their declared
shape and dtype, quantized dtypes with QParams. It needs nothing but ``microtrain.ir``, so a
graph saved at any stage (inference, training, fused) verifies in a fresh interpreter.
"""

from __future__ import annotations

from microtrain.ir.check import IRError, OutSpec, ShapeRule, check_graph, verify_tensor
from microtrain.ir.graph import Graph
from microtrain.ir.registry import SHAPE_RULES
from microtrain.ir.shapes_forward import conv_output_hw

__all__ = ["SHAPE_RULES", "IRError", "OutSpec", "ShapeRule", "conv_output_hw", "verify_graph", "verify_tensor"]


def verify_graph(graph: Graph) -> Graph:
    """Check every invariant; return the graph unchanged so passes can chain it."""
    return check_graph(graph, SHAPE_RULES)
