"""The op registry: every rule of every op is found from here.

Adding an op (say MAX_POOL2D) -- this module is the place to start, and the checklist:

  1. ``ir/ops.py``: the ``Op`` member, its one-line meaning in the module docstring, and the
     property groups it belongs to (``INT8_OPS``, ``TRAINING_OPS``, ...).
  2. Its shape rule (operand checks -> output shapes and dtypes) in the ``ir/shapes_*.py``
     module of its kind (forward, training; a fused op gets its own ``ir/<name>.py``), and
     its line in ``SHAPE_RULES`` below. If its C kernel has a ``*_get_buffer_size`` query, the
     twin goes in ``ir/buffer_sizes.py`` and the op's line in ``BUFFER_RULES`` below.
  3. One rule in each table of ``RULE_KINDS`` below (the file is named there), or the op in
     that table's ``<TABLE>_EXEMPT`` set when the kind does not apply to it (e.g. no VJP for
     an op no gradient flows through).
  4. Its C kernel: ``runtime/src/<family>/mt_<name>.c``, declared in ``runtime/include/mt_runtime.h``.

``tests/test_rule_tables.py`` loads every table through this registry in a fresh interpreter
and names each table that neither has a rule for an op nor exempts it, so steps 2-3 cannot be
half done. A graph's shape rules need only ``microtrain.ir``: a training or fused graph saved
at any stage loads and verifies with nothing else imported. The other kinds of rule belong
to layers above the IR (executors, compiler, codegen, report); ``rule_table(kind)`` imports
the module that holds the kind's one table explicitly, on first use. No rule is ever added to
a table as a side effect of importing some other module.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from microtrain.ir import block_grads, fused_blocks, shapes_forward, shapes_training, shapes_window
from microtrain.ir.buffer_sizes import (
    clamp_mask_get_buffer_size,
    conv2d_grad_weight_get_buffer_size,
    fully_connected_grad_weight_get_buffer_size,
    gather_channels_get_buffer_size,
)
from microtrain.ir.check import ShapeRule
from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import Op

SHAPE_RULES: dict[Op, ShapeRule] = {
    **shapes_forward.FORWARD_SHAPE_RULES,
    **shapes_training.TRAINING_SHAPE_RULES,
    **shapes_window.WINDOW_SHAPE_RULES,
    Op.FUSED_INVERTED_BOTTLENECK: fused_blocks.fused_shape,
    Op.INVERTED_BOTTLENECK_GRAD: block_grads.block_grad_shape,
}
"""Abstract evaluation of every op: ``SHAPE_RULES[op](node, input tensors) -> [(shape, dtype)]``
per output, raising ``IRError`` naming the node when an operand does not fit."""

BufferRule = Callable[[Node, Graph], int]


def _mask(node: Node, graph: Graph) -> int:
    return clamp_mask_get_buffer_size(graph.tensors[node.inputs[0]].size)


def _conv_grad_weight(node: Node, graph: Graph) -> int:
    kh, kw, per_group = node.attrs["kernel"]
    groups = int(node.attrs.get("groups", 1))
    return conv2d_grad_weight_get_buffer_size(kh, kw, per_group * groups, groups, len(node.attrs["channels"]))


def _fc_grad_weight(node: Node, graph: Graph) -> int:
    return fully_connected_grad_weight_get_buffer_size(graph.tensors[node.inputs[1]].shape[1],
                                                       len(node.attrs["channels"]))


def _gather(node: Node, graph: Graph) -> int:
    x = graph.tensors[node.inputs[0]]
    return gather_channels_get_buffer_size(x.size // x.shape[-1], len(node.attrs["channels"]))


def _scratch(node: Node, graph: Graph) -> int:
    return int(node.attrs["scratch_bytes"])


BUFFER_RULES: dict[Op, BufferRule] = {
    Op.CLAMP_MASK: _mask,
    Op.CONV2D_GRAD_WEIGHT: _conv_grad_weight,
    Op.FC_GRAD_WEIGHT: _fc_grad_weight,
    Op.SLICE_CHANNELS: _gather,
    Op.FUSED_INVERTED_BOTTLENECK: _scratch,
    Op.INVERTED_BOTTLENECK_GRAD: _scratch,
}
"""Bytes the caller hands the op's C kernel, as its ``*_get_buffer_size`` query says: the
mask, the kept channels' weight gradient (a whole one; ``reorder_updates`` may chunk it), the
gathered channels, a fused kernel's scratch (``fused_blocks.scratch_bytes`` sets it)."""

BUFFER_RULES_EXEMPT = frozenset(Op) - frozenset(BUFFER_RULES)
"""Kernels without a size query: they write only their operands' and outputs' own bytes."""


@dataclasses.dataclass(frozen=True)
class RuleKind:
    """One kind of per-op rule: the table that holds it and what a rule of it does."""

    name: str
    module: str
    table: str
    meaning: str
    exempt: str = ""
    """Name of the frozenset of ops the kind does not apply to, next to the table
    (default ``<TABLE>_EXEMPT``; no such set: every op needs a rule)."""

    @property
    def exempt_name(self) -> str:
        return self.exempt or f"{self.table}_EXEMPT"


RULE_KINDS: tuple[RuleKind, ...] = (
    RuleKind("shape", "microtrain.ir.registry", "SHAPE_RULES", "output shapes and dtypes (the verifier)"),
    RuleKind("buffer", "microtrain.ir.registry", "BUFFER_RULES", "bytes of the C kernel's buffer-size query"),
    RuleKind("eval", "microtrain.interp.training", "ALL_EVAL_RULES",
             "reference evaluation, numpy, batch 1 (forward ops: interp/reference.py; training: interp/training.py)"),
    RuleKind("batch", "microtrain.interp.batched", "BATCH_RULES", "batched int8 inference (whole test sets)"),
    RuleKind("sim", "microtrain.sim.ops", "SIM_RULES", "torch simulator: integer forward, straight-through backward",
             "SIM_EXEMPT"),
    RuleKind("vjp", "microtrain.compiler.differentiate", "VJP_RULES", "backward nodes of a forward node (autodiff)",
             "VJP_EXEMPT"),
    RuleKind("inplace", "microtrain.compiler.inplace", "INPLACE_RULES", "operands the output may overwrite"),
    RuleKind("emit", "microtrain.codegen.emit_rules", "EMIT_RULES", "the C lines of the training step"),
    RuleKind("emit_error", "microtrain.codegen.emit_error", "ERROR_EMIT_RULES",
             "the C lines of a node reading or writing an integer error (error_bits; --grad-dtype)"),
    RuleKind("cost", "microtrain.report.inspect", "MACS_RULES", "multiply-accumulates of an inference node"),
)
"""Every kind of per-op rule and the one table that holds it."""

KINDS: Mapping[str, RuleKind] = {k.name: k for k in RULE_KINDS}


def rule_table(kind: str) -> dict[Op, Any]:
    """The table of one kind of rule, its module imported explicitly here."""
    k = KINDS[kind]
    return getattr(importlib.import_module(k.module), k.table)


def exempt_ops(kind: str) -> frozenset[Op]:
    """Ops the kind deliberately does not apply to (``<TABLE>_EXEMPT`` next to the table)."""
    k = KINDS[kind]
    return frozenset(getattr(importlib.import_module(k.module), k.exempt_name, frozenset()))


def rules_of(op: Op) -> dict[str, Any]:
    """Every rule of one op, by kind (None where the kind exempts it)."""
    return {k.name: rule_table(k.name).get(op) for k in RULE_KINDS}

