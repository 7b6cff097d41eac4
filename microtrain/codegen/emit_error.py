"""C emission of the backward nodes of an integer error (``error_bits``; ``--grad-dtype``).

A layer's MASK_GRAD with ``error_bits`` B masks and quantizes its error into int{B} codes and
an exponent (``mt_quantize_error_s8/s16``); its consumers -- input, weight and bias gradients,
the exponent their last input -- read them through one ``mt_grad_codes`` descriptor. The kernels are
``runtime/src/backward/*_err_f32.c`` and the rule is ``runtime/grad_quant.py``'s.
``ERROR_EMIT_RULES[op](node, ctx)`` for the nodes that carry ``error_bits``;
``grad_weight_call`` gives ``emit_rules._grad_weight`` the kernel call of a weight gradient.
"""

from __future__ import annotations

from collections.abc import Callable

from microtrain.codegen.context import CContext, c_float
from microtrain.ir.conv_kinds import is_depthwise
from microtrain.ir.graph import Node
from microtrain.ir.ops import Op


def _try(ctx: CContext, kernel: str, *args: str) -> str:
    return f"MT_TRY({ctx.kernel(kernel)}({', '.join(args)}));"


def error_decl(node: Node, ctx: CContext) -> str:
    """The ``mt_grad_codes`` of a consumer's error: codes (first input), bits, exponent (last input)."""
    codes, exponent, bits = node.inputs[0], node.inputs[-1], int(node.attrs["error_bits"])
    return f"    const mt_grad_codes err = {{{ctx.ptr(codes)}, {bits}, {ctx.ptr(exponent)}[0]}};"


def _mask_grad(node: Node, ctx: CContext) -> list[str]:
    g, m = node.inputs
    codes, exponent = node.outputs
    bits = int(node.attrs["error_bits"])
    return [_try(ctx, f"mt_quantize_error_s{bits}", ctx.ptr(g), ctx.ptr(m), str(ctx.graph.tensors[g].size),
                 ctx.ptr(codes), ctx.ptr(exponent))]


def _conv_grad_input(node: Node, ctx: CContext) -> list[str]:
    layer = ctx.graph.node(node.attrs["layer"])
    w = node.inputs[1]
    rows = ctx.rows_table(w)  # a split trained weight: its rows through the table, as the fp32 path
    return ["{", error_decl(node, ctx),
            "    " + _try(ctx, "mt_conv2d_grad_input_err_f32", "&" + ctx.conv_params(layer), ctx.weight_scales(w),
                          "NULL" if rows is not None else ctx.ptr(w), rows if rows is not None else "NULL", "&err",
                          ctx.ptr(node.outputs[0])), "}"]


def _fc_grad_input(node: Node, ctx: CContext) -> list[str]:
    layer = ctx.graph.node(node.attrs["layer"])
    w = node.inputs[1]
    return ["{", error_decl(node, ctx),
            "    " + _try(ctx, "mt_fully_connected_grad_input_err_f32", "&" + ctx.fc_params(layer),
                          ctx.weight_scales(w), ctx.ptr(w), "&err", ctx.ptr(node.outputs[0])), "}"]


def _bias_grad(node: Node, ctx: CContext) -> list[str]:
    g = ctx.graph.tensors[node.inputs[0]]
    c = g.shape[-1]
    return ["{", error_decl(node, ctx), f"    const mt_channels ch = {{NULL, {c}, 0, {c}}};",
            "    " + _try(ctx, "mt_bias_grad_err_f32", "&err", str(g.size // c), str(c), "&ch",
                          ctx.ptr(node.outputs[0])), "}"]


def grad_weight_call(node: Node, ctx: CContext) -> Callable[[str], str]:
    """The weight-gradient kernel call into ``gw`` (uses ``err`` and ``ch`` of the enclosing block)."""
    layer = ctx.graph.node(node.attrs["layer"])
    x = node.inputs[1]
    scale = c_float(ctx.graph.tensors[x].quant.s)
    if node.op == Op.FC_GRAD_WEIGHT:
        return lambda gw: _try(ctx, "mt_fully_connected_grad_weight_err_f32", "&" + ctx.fc_params(layer), scale,
                               ctx.ptr(x), "&err", "&ch", gw)
    sliced = "1" if node.attrs.get("x_channels") is not None and is_depthwise(layer, ctx.graph) else "0"
    return lambda gw: _try(ctx, "mt_conv2d_grad_weight_err_f32", "&" + ctx.conv_params(layer), scale, ctx.ptr(x),
                           sliced, "&err", "&ch", gw)


ERROR_EMIT_RULES: dict[Op, Callable[[Node, CContext], list[str]]] = {
    Op.MASK_GRAD: _mask_grad,
    Op.CONV2D_GRAD_INPUT: _conv_grad_input,
    Op.FC_GRAD_INPUT: _fc_grad_input,
    Op.BIAS_GRAD: _bias_grad,
}
"""Nodes with ``error_bits``; the weight gradients go through ``emit_rules._grad_weight`` (its
per-channel update loop) with ``grad_weight_call``."""

ERROR_EMIT_RULES_EXEMPT = frozenset(Op) - frozenset(ERROR_EMIT_RULES)
"""Ops that never read or write an integer error, and the weight gradients, which do but are emitted
by ``emit_rules._grad_weight`` (its per-channel update loop) with ``grad_weight_call``."""
