"""Which buffers an op's output may share with its operands: the planner's in-place rules.

* ``INPLACE_RULES[op]``: operands an elementwise op may overwrite with its output (same size,
  same position), as its C kernel allows aliasing;
* ``depthwise_grad_inplace_ok``: a same-shape depthwise input gradient may overwrite its output
  gradient (``mt_depthwise_conv2d_grad_input_inplace_f32``, one plane of scratch);
* ``inverted_bottleneck_inplace_ok``: the twin of the fused block kernel's aliasing check
  (may its output overwrite its input from the same address, a row behind the reads?),
  which ``plan_memory`` uses for the lagged in-place of ``overwrite_ok`` nodes.
"""

from __future__ import annotations

from microtrain.ir.buffer_sizes import depthwise_conv2d_grad_input_inplace_get_buffer_size
from microtrain.ir.conv_kinds import depthwise
from microtrain.ir.graph import Graph
from microtrain.ir.ops import Op
from microtrain.runtime import twins

INPLACE_RULES: dict[Op, tuple[int, ...]] = {
    Op.MASK_GRAD: (0,),          # mt_apply_mask_f32: grad_out may alias grad_in
    Op.GRAD_ACCUMULATE: (0, 1),  # mt_add_f32: out may alias a or b
    Op.ADD: (0, 1),              # mt_add_s8: output may alias a or b
    Op.LOSS_GRAD: (0,),          # mt_softmax_cross_entropy_f32: grad may alias logits
    Op.MSE_GRAD: (0,),           # mt_mean_squared_error_f32: grad may alias the prediction
}
"""Operands an op may overwrite with its output (elementwise, same size, same position)."""

INPLACE_RULES_EXEMPT = frozenset(Op) - frozenset(INPLACE_RULES)
"""Every other op writes a fresh buffer (RESHAPE is a view, handled apart)."""

INPLACE_SCRATCH_MAX = 4096
"""Largest scratch (one channel plane, bytes) of the in-place depthwise input gradient; the
generated code keeps it on the stack."""


def depthwise_grad_inplace_ok(graph: Graph, node) -> bool:
    """A depthwise CONV2D_GRAD_INPUT whose input gradient has its output gradient's shape can
    overwrite it (mt_depthwise_conv2d_grad_input_inplace_f32, one plane of scratch)."""
    if node.op != Op.CONV2D_GRAD_INPUT:
        return False
    layer = graph.node(node.attrs["layer"])
    x, w = graph.tensors[layer.inputs[0]], graph.tensors[layer.inputs[1]]
    g, gi = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    return (depthwise(int(layer.attrs.get("groups", 1)), x.shape[3], w.shape)
            and g.shape == gi.shape and g.dtype == gi.dtype
            and depthwise_conv2d_grad_input_inplace_get_buffer_size(x.shape[1], x.shape[2])
            <= INPLACE_SCRATCH_MAX)


def inplace_operands(graph: Graph, node) -> tuple[int, ...]:
    """Operands ``node`` may overwrite: ``INPLACE_RULES`` of its op, plus the in-place depthwise grad."""
    if depthwise_grad_inplace_ok(graph, node):
        return (0,)
    return INPLACE_RULES.get(node.op, ())


def inverted_bottleneck_inplace_ok(p: dict) -> bool:
    """Twin of the kernel's aliasing check: may the output overwrite the input (same pointer)?

    Output row oy is written after every expanded row it needs was computed; it may overwrite
    input bytes that no later row will read. Later rows read input from row
    ``first_row_needed(oy + 1)`` on (the residual reads each pixel just before overwriting it).
    """
    e, d, pr = p["expand"], p["depthwise"], p["project"]
    in_row = d["in_w"] * d["in_c"] if not p["has_expand"] else e["in_w"] * e["in_c"]
    in_h = d["in_h"] if not p["has_expand"] else e["in_h"]
    out_row = pr["out_w"] * pr["out_c"]
    if in_row * in_h < out_row * pr["out_h"]:
        return False  # the output must fit in the input's bytes
    for oy in range(pr["out_h"] - 1):
        hi = min(oy * d["stride_h"] - d["pad_top"] + d["kernel_h"] - 1, d["in_h"] - 1)
        if p["has_expand"]:
            if hi + 1 >= d["in_h"]:
                continue  # every expanded row is in the ring already: the input is not read again
            first = max(0, (hi + 1) * e["stride_h"] - e["pad_top"])
        else:
            first = max(0, (oy + 1) * d["stride_h"] - d["pad_top"])
        if (oy + 1) * out_row > first * in_row:
            return False
    return True


def overwrite_ok(graph: Graph, node) -> bool:
    """May ``node``'s output be written over its input from the same address (lagged in place)?"""
    if node.op != Op.FUSED_INVERTED_BOTTLENECK or graph.meta.get("stream_input") == node.name:
        return False
    return inverted_bottleneck_inplace_ok(twins.inverted_bottleneck_params(node, graph))
