"""C emission of the window and copy ops and their gradients (one kernel call each, as
``emit_rules``, whose ``EMIT_RULES`` includes these): pools, PAD, CONCAT (one
``mt_concat_part_s8`` per input), SOFTMAX, and AVG_POOL2D_GRAD, MAX_POOL2D_GRAD, PAD_GRAD,
CONCAT_GRAD. Parameters come from ``runtime/twins.py``, the values the tests check the
kernels with."""

from __future__ import annotations

from microtrain.codegen.context import CContext
from microtrain.ir.graph import Node
from microtrain.ir.ops import Op
from microtrain.runtime import twins


def _try(ctx: CContext, kernel: str, *args: str) -> str:
    return f"MT_TRY({ctx.kernel(kernel)}({', '.join(args)}));"


def _pool(node: Node, ctx: CContext) -> list[str]:
    x, y = node.inputs[0], node.outputs[0]
    fields = twins.pool_params_struct(node, ctx.graph.tensors[x].shape, ctx.graph.tensors[y].shape)
    p = ctx.struct("mt_pool_params", "PL", node.name, fields)
    kernel = "mt_avg_pool2d_s8" if node.op is Op.AVG_POOL2D else "mt_max_pool2d_s8"
    return [_try(ctx, kernel, "&" + p, ctx.ptr(x), ctx.ptr(y))]


def _pad(node: Node, ctx: CContext) -> list[str]:
    x, y = node.inputs[0], node.outputs[0]
    p = ctx.struct("mt_pad_params", "PD", node.name, twins.pad_params_struct(node, ctx.graph.tensors[x].shape))
    return [_try(ctx, "mt_pad_s8", "&" + p, ctx.ptr(x), ctx.ptr(y))]


def _concat(node: Node, ctx: CContext) -> list[str]:
    y = ctx.graph.tensors[node.outputs[0]]
    axis = int(node.attrs["axis"])
    lines, offset = [], 0
    for k, name in enumerate(node.inputs):
        size = ctx.graph.tensors[name].shape[axis]
        p = ctx.struct("mt_concat_params", "CC", f"{node.name}.{k}", twins.concat_part_struct(y.shape, axis, offset,
                                                                                             size))
        lines.append(_try(ctx, "mt_concat_part_s8", "&" + p, ctx.ptr(name), ctx.ptr(y.name)))
        offset += size
    return lines


def _softmax(node: Node, ctx: CContext) -> list[str]:
    p = ctx.struct("mt_softmax_params", "SM", node.name, twins.softmax_params_struct(node, ctx.graph))
    return [_try(ctx, "mt_softmax_s8", "&" + p, ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]))]


def _pool_grad(node: Node, ctx: CContext) -> list[str]:
    g = ctx.graph.tensors[node.inputs[0]]
    fields = twins.pool_params_struct(node, tuple(node.attrs["input_shape"]), g.shape)
    p = ctx.struct("mt_pool_params", "PG", node.name, fields)
    if node.op is Op.AVG_POOL2D_GRAD:
        return [_try(ctx, "mt_avg_pool2d_grad_f32", "&" + p, ctx.ptr(g.name), ctx.ptr(node.outputs[0]))]
    return [_try(ctx, "mt_max_pool2d_grad_f32", "&" + p, ctx.ptr(node.inputs[1]), ctx.ptr(g.name),
                 ctx.ptr(node.outputs[0]))]


def _pad_grad(node: Node, ctx: CContext) -> list[str]:
    shape = ctx.graph.tensors[node.outputs[0]].shape
    p = ctx.struct("mt_pad_params", "PDG", node.name, twins.pad_params_struct(node, shape))
    return [_try(ctx, "mt_pad_grad_f32", "&" + p, ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]))]


def _concat_grad(node: Node, ctx: CContext) -> list[str]:
    g = ctx.graph.tensors[node.inputs[0]]
    fields = twins.concat_part_struct(g.shape, int(node.attrs["axis"]), int(node.attrs["offset"]),
                                      int(node.attrs["size"]))
    p = ctx.struct("mt_concat_params", "CG", node.name, fields)
    return [_try(ctx, "mt_concat_part_grad_f32", "&" + p, ctx.ptr(g.name), ctx.ptr(node.outputs[0]))]


WINDOW_EMIT_RULES = {
    Op.AVG_POOL2D: _pool, Op.MAX_POOL2D: _pool, Op.PAD: _pad, Op.CONCAT: _concat, Op.SOFTMAX: _softmax,
    Op.AVG_POOL2D_GRAD: _pool_grad, Op.MAX_POOL2D_GRAD: _pool_grad, Op.PAD_GRAD: _pad_grad,
    Op.CONCAT_GRAD: _concat_grad,
}
