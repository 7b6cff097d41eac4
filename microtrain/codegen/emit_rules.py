"""C emission rules: ``EMIT_RULES[op](node, ctx) -> lines`` of the step function body.

One rule per op, each one call to the runtime kernel of ``runtime/include/mt_runtime.h``
(argument order exactly as declared there) wrapped in ``MT_TRY`` (return the status on
error). A weight gradient marked ``chunk`` by ``reorder_updates`` is emitted together with
its update as one loop over the kept channels: compute one channel's gradient, apply it,
reuse the buffer (the update node itself then emits nothing).
"""

from __future__ import annotations

from collections.abc import Callable

from microtrain.codegen.context import CContext, c_float
from microtrain.codegen.emit_error import ERROR_EMIT_RULES, error_decl, grad_weight_call
from microtrain.codegen.emit_window import WINDOW_EMIT_RULES
from microtrain.compiler.stream_input import input_ring_bytes
from microtrain.ir.buffer_sizes import PATCH_MAX, depthwise_conv2d_grad_input_inplace_get_buffer_size
from microtrain.ir.conv_kinds import is_depthwise, is_pointwise
from microtrain.ir.graph import Node
from microtrain.ir.ops import Op
from microtrain.runtime import packs, twins

EmitRule = Callable[[Node, CContext], list[str]]


def _try(ctx: CContext, kernel: str, *args: str) -> str:
    return f"MT_TRY({ctx.kernel(kernel)}({', '.join(args)}));"


def _size(ctx: CContext, name: str) -> int:
    return ctx.graph.tensors[name].size


def _conv_kernel(node: Node, ctx: CContext) -> str:
    return ("mt_depthwise_conv2d_s8" if is_depthwise(node, ctx.graph)
            else "mt_pointwise_conv2d_s8" if is_pointwise(node, ctx.graph) else "mt_conv2d_s8")


def _conv2d(node: Node, ctx: CContext) -> list[str]:
    if "band" in node.attrs:
        return _banded_chain(node, ctx)
    x, w, b = node.inputs
    rows = ctx.rows_table(w)
    if rows is not None:  # a split trained weight (split_trained_rows): pointwise, rows from RAM and flash
        return [_try(ctx, "mt_pointwise_conv2d_rows_s8", "&" + ctx.conv_params(node), "&" + ctx.requant(node),
                     ctx.ptr(x), "NULL", rows, ctx.ptr(b), ctx.ptr(node.outputs[0]))]
    return [_try(ctx, _conv_kernel(node, ctx), "&" + ctx.conv_params(node), "&" + ctx.requant(node), ctx.ptr(x),
                 ctx.ptr(w), ctx.ptr(b), ctx.ptr(node.outputs[0]))]


def _banded_chain(node: Node, ctx: CContext) -> list[str]:
    """The whole chain (split_bands), unrolled band by band, at its first node."""
    band = node.attrs["band"]
    if band["index"] != 0:
        return [f"/* {node.name}: computed band by band with {band['chain']} above */"]
    start = next(i for i, n in enumerate(ctx.graph.nodes) if n.name == node.name)
    chain = ctx.graph.nodes[start:start + band["length"]]
    lines = [f"/* {len(chain)} convs in {band['bands']} bands of output rows (bit-exact with whole tensors) */"]
    for k in range(band["bands"]):
        for li, layer in enumerate(chain):
            x_t = ctx.graph.tensors[layer.inputs[0]]
            y_t = ctx.graph.tensors[layer.outputs[0]]
            a, b = layer.attrs["band"]["rows"][k]
            i0, i1, pt, pb = layer.attrs["band"]["in_rows"][k]
            fields = {**twins.conv_params(layer, ctx.graph), "in_h": i1 - i0, "out_h": b - a,
                      "pad_top": pt, "pad_bottom": pb}
            params = ctx.struct("mt_conv_params", "CB", f"{layer.name}.band{k}", fields)
            row_in = x_t.shape[2] * x_t.shape[3]
            row_out = y_t.shape[2] * y_t.shape[3]
            src = ctx.ptr(layer.inputs[0]) + (f" + {i0 * row_in}" if li == 0 else "")
            dst = ctx.ptr(layer.outputs[0]) + (f" + {a * row_out}" if li == len(chain) - 1 else "")
            lines.append(_try(ctx, _conv_kernel(layer, ctx), "&" + params, "&" + ctx.requant(layer), src,
                              ctx.ptr(layer.inputs[1]), ctx.ptr(layer.inputs[2]), dst))
    return lines


def _fully_connected(node: Node, ctx: CContext) -> list[str]:
    x, w, b = node.inputs
    return [_try(ctx, "mt_fully_connected_s8", "&" + ctx.fc_params(node), "&" + ctx.requant(node), ctx.ptr(x),
                 ctx.ptr(w), ctx.ptr(b), ctx.ptr(node.outputs[0]))]


def _add(node: Node, ctx: CContext) -> list[str]:
    p = ctx.struct("mt_add_params", "AP", node.name, twins.add_params_struct(node, ctx.graph))
    return [_try(ctx, "mt_add_s8", "&" + p, ctx.ptr(node.inputs[0]), ctx.ptr(node.inputs[1]),
                 ctx.ptr(node.outputs[0]))]


def _global_avg_pool(node: Node, ctx: CContext) -> list[str]:
    p = ctx.struct("mt_avg_pool_params", "PP", node.name, twins.avg_pool_params_struct(node, ctx.graph))
    return [_try(ctx, "mt_global_avg_pool_s8", "&" + p, ctx.ptr(node.inputs[0]), ctx.ptr(node.outputs[0]))]


def _reshape(node: Node, ctx: CContext) -> list[str]:
    src, dst = node.inputs[0], node.outputs[0]
    if ctx.offset(src) == ctx.offset(dst):
        return [f"/* {node.name}: reshape is a view of the same buffer */"]
    nbytes = ctx.graph.tensors[dst].nbytes
    return [f"memmove({ctx.ptr(dst)}, {ctx.ptr(src)}, {nbytes});"]


def _dequantize(node: Node, ctx: CContext) -> list[str]:
    q = ctx.graph.tensors[node.inputs[0]].quant
    return [_try(ctx, "mt_dequantize_s8_f32", ctx.ptr(node.inputs[0]), str(_size(ctx, node.inputs[0])),
                 c_float(q.s), str(q.z), ctx.ptr(node.outputs[0]))]


def _softmax_cross_entropy(node: Node, ctx: CContext) -> list[str]:
    return [_try(ctx, "mt_softmax_cross_entropy_f32", ctx.ptr(node.inputs[0]), str(_size(ctx, node.inputs[0])),
                 "label", ctx.ptr(node.outputs[0]), "NULL")]


def _loss_grad(node: Node, ctx: CContext) -> list[str]:
    return ["{", "    float unused_loss;",
            "    " + _try(ctx, "mt_softmax_cross_entropy_f32", ctx.ptr(node.inputs[0]),
                          str(_size(ctx, node.inputs[0])), "label", "&unused_loss", ctx.ptr(node.outputs[0])),
            "}"]


def _mse(node: Node, ctx: CContext, grad: str) -> list[str]:
    p, t = node.inputs
    q = ctx.graph.tensors[t].quant
    return [_try(ctx, "mt_mean_squared_error_f32", ctx.ptr(p), ctx.ptr(t), str(_size(ctx, p)), c_float(q.s), str(q.z),
                 "&unused_loss" if grad != "NULL" else ctx.ptr(node.outputs[0]), grad)]


def _mean_squared_error(node: Node, ctx: CContext) -> list[str]:
    return _mse(node, ctx, "NULL")


def _mse_grad(node: Node, ctx: CContext) -> list[str]:
    return ["{", "    float unused_loss;", "    " + _mse(node, ctx, ctx.ptr(node.outputs[0]))[0], "}"]


def _clamp_mask(node: Node, ctx: CContext) -> list[str]:
    y = node.inputs[0]
    return [_try(ctx, "mt_clamp_mask_s8", ctx.ptr(y), str(_size(ctx, y)), str(node.attrs["act_min"]),
                 str(node.attrs["act_max"]), ctx.ptr(node.outputs[0]))]


def _mask_grad(node: Node, ctx: CContext) -> list[str]:
    g, m = node.inputs
    return [_try(ctx, "mt_apply_mask_f32", ctx.ptr(g), ctx.ptr(m), str(_size(ctx, g)), ctx.ptr(node.outputs[0]))]


def _grad_accumulate(node: Node, ctx: CContext) -> list[str]:
    a, b = node.inputs
    return [_try(ctx, "mt_add_f32", ctx.ptr(a), ctx.ptr(b), str(_size(ctx, a)), ctx.ptr(node.outputs[0]))]


def _avg_pool_grad(node: Node, ctx: CContext) -> list[str]:
    _, h, w, c = node.attrs["input_shape"]
    return [_try(ctx, "mt_global_avg_pool_grad_f32", str(h), str(w), str(c), ctx.ptr(node.inputs[0]),
                 ctx.ptr(node.outputs[0]))]


def _conv_grad_input(node: Node, ctx: CContext) -> list[str]:
    layer = ctx.graph.node(node.attrs["layer"])
    g, w = node.inputs
    rows = ctx.rows_table(w)
    if rows is not None:  # a split trained weight: pointwise (split_trained_rows checked it)
        return [_try(ctx, "mt_pointwise_conv2d_grad_input_rows_f32", "&" + ctx.conv_params(layer),
                     ctx.weight_scales(w), "NULL", rows, ctx.ptr(g), ctx.ptr(node.outputs[0]))]
    out = node.outputs[0]
    if is_depthwise(layer, ctx.graph) and ctx.same_buffer(g, out):
        # the planner let the input gradient overwrite the output gradient (inplace_operands)
        x_t = ctx.graph.tensors[layer.inputs[0]]
        plane = depthwise_conv2d_grad_input_inplace_get_buffer_size(x_t.shape[1], x_t.shape[2]) // 4
        return ["{", f"    float scratch[{plane}]; /* one channel plane */",
                "    " + _try(ctx, "mt_depthwise_conv2d_grad_input_inplace_f32", "&" + ctx.conv_params(layer),
                              ctx.weight_scales(w), ctx.ptr(w), ctx.ptr(g), "scratch"), "}"]
    kernel = "mt_depthwise_conv2d_grad_input_f32" if is_depthwise(layer, ctx.graph) else "mt_conv2d_grad_input_f32"
    return [_try(ctx, kernel, "&" + ctx.conv_params(layer), ctx.weight_scales(w), ctx.ptr(w), ctx.ptr(g),
                 ctx.ptr(node.outputs[0]))]


def _fc_grad_input(node: Node, ctx: CContext) -> list[str]:
    layer = ctx.graph.node(node.attrs["layer"])
    g, w = node.inputs
    return [_try(ctx, "mt_fully_connected_grad_input_f32", "&" + ctx.fc_params(layer), ctx.weight_scales(w),
                 ctx.ptr(w), ctx.ptr(g), ctx.ptr(node.outputs[0]))]


def _bias_grad(node: Node, ctx: CContext) -> list[str]:
    g = ctx.graph.tensors[node.inputs[0]]
    c = g.shape[-1]
    return ["{", f"    const mt_channels ch = {{NULL, {c}, 0, {c}}};",
            "    " + _try(ctx, "mt_bias_grad_f32", ctx.ptr(g.name), str(g.size // c), str(c), "&ch",
                          ctx.ptr(node.outputs[0])), "}"]


def _update_call(upd: Node, ctx: CContext, grad_ptr: str) -> str:
    p = ctx.graph.tensors[upd.inputs[0]]
    factors = ctx.const_array("F", upd.inputs[0], "float", upd.attrs["factors"])
    if upd.op == Op.UPDATE_WEIGHT:
        sliced = "1" if ctx.rows_table(p.name) is not None else "0"  # split: RAM holds the kept rows only
        return _try(ctx, "mt_sgd_update_s8", ctx.ptr(p.name), sliced, str(p.size // p.shape[0]), factors,
                    grad_ptr, "&ch", "&u")
    return _try(ctx, "mt_sgd_update_s32", ctx.ptr(p.name), factors, grad_ptr, "&ch", "&u")


def _update_params(upd: Node, ctx: CContext) -> str:
    """The update's mt_update_params: lr, rounding, seed, update counter, tensor id, and its
    optimizer state (insert_updates.optimizer_state): the accumulation buffer with this sample's
    apply flag and 1/K, the momentum buffer with mu."""
    from microtrain.runtime.rounding import accumulate_scale, optimizer_state

    rounding = twins.ROUNDING_MODES[upd.attrs.get("rounding", "stochastic")]
    state = optimizer_state(upd, ctx.graph)
    k, mu = int(upd.attrs.get("accumulate", 1)), float(upd.attrs.get("momentum", 0.0))
    accum = ctx.state_array(upd.inputs[0], "accum", state["accum"]) if "accum" in state else "NULL"
    mom = ctx.state_array(upd.inputs[0], "momentum", state["momentum"]) if "momentum" in state else "NULL"
    return (f"    const mt_update_params u = {{lr, {rounding}, mt_seed, mt_update, {upd.attrs['tensor_id']}u, "
            f"{accum}, mt_apply, {c_float(accumulate_scale(k))}, {mom}, {c_float(mu)}}};")


def _grad_weight(node: Node, ctx: CContext) -> list[str]:
    layer = ctx.graph.node(node.attrs["layer"])
    g, x = node.inputs[:2]
    x_t = ctx.graph.tensors[x]
    out_c = ctx.graph.tensors[g].shape[-1]
    index, count = ctx.channels(f"{layer.name}.weight", node.attrs["channels"], out_c)
    if node.op == Op.FC_GRAD_WEIGHT:
        call = lambda gw: _try(ctx, "mt_fully_connected_grad_weight_f32", "&" + ctx.fc_params(layer),  # noqa: E731
                               c_float(x_t.quant.s), ctx.ptr(x), ctx.ptr(g), "&ch", gw)
    elif is_depthwise(layer, ctx.graph):
        sliced = "1" if node.attrs.get("x_channels") is not None else "0"
        call = lambda gw: _try(ctx, "mt_depthwise_conv2d_grad_weight_f32", "&" + ctx.conv_params(layer),  # noqa: E731
                               c_float(x_t.quant.s), ctx.ptr(x), sliced, ctx.ptr(g), "&ch", gw)
    else:
        call = lambda gw: _try(ctx, "mt_conv2d_grad_weight_f32", "&" + ctx.conv_params(layer),  # noqa: E731
                               c_float(x_t.quant.s), ctx.ptr(x), ctx.ptr(g), "&ch", gw)
    err = []
    if node.attrs.get("error_bits"):  # an integer error (codegen/emit_error.py)
        call, err = grad_weight_call(node, ctx), [error_decl(node, ctx)]
    gw = ctx.ptr(node.outputs[0])
    if not node.attrs.get("chunk"):
        return ["{", *err, f"    const mt_channels ch = {{{index}, {count}, 0, {count}}};", "    " + call(gw), "}"]
    upd = next(n for n in ctx.graph.nodes if n.inputs[1:2] == (node.outputs[0],))
    step = int(node.attrs["chunk"])
    return ["{", "    int32_t j;", *err, _update_params(upd, ctx),
            f"    for (j = 0; j < {count}; j += {step}) {{",
            f"        const mt_channels ch = {{{index}, {count}, j, j + {step} < {count} ? j + {step} : {count}}};",
            "        " + call(gw), "        " + _update_call(upd, ctx, gw), "    }", "}"]


def _slice_channels(node: Node, ctx: CContext) -> list[str]:
    x = ctx.graph.tensors[node.inputs[0]]
    index, count = ctx.channels(f"{node.outputs[0]}", node.attrs["channels"], -1)
    return ["{", f"    const mt_channels ch = {{{index}, {count}, 0, {count}}};",
            "    " + _try(ctx, "mt_gather_channels_s8", ctx.ptr(x.name), str(x.size // x.shape[-1]), str(x.shape[-1]),
                          "&ch", ctx.ptr(node.outputs[0])), "}"]


def _update(node: Node, ctx: CContext) -> list[str]:
    if node.attrs.get("chunk"):
        return [f"/* {node.name}: applied per channel together with its gradient above */"]
    p = ctx.graph.tensors[node.inputs[0]]
    index, count = ctx.channels(f"{p.name}.upd", node.attrs["channels"], p.shape[0])
    return ["{", f"    const mt_channels ch = {{{index}, {count}, 0, {count}}};", _update_params(node, ctx),
            "    " + _update_call(node, ctx, ctx.ptr(node.inputs[1])), "}"]


def _free_arena_gap(ctx: CContext, node: Node, size: int) -> int | None:
    """Lowest arena offset of `size` bytes that no buffer live at `node` uses (None: no such gap)."""
    i = next(k for k, n in enumerate(ctx.graph.nodes) if n.name == node.name)
    live = sorted((b.offset, b.offset + b.size) for b in ctx.plan.buffers if b.first <= i <= b.last)
    at = 0
    for lo, hi in live:
        if lo - at >= size:
            return at
        at = max(at, hi)
    return at if ctx.plan.arena_bytes - at >= size else None


def _fused_inverted_bottleneck(node: Node, ctx: CContext) -> list[str]:
    """One call to the row-streamed block kernel; its scratch is the node's planned second output."""
    p = twins.inverted_bottleneck_params(node, ctx.graph)
    consts = [ctx.ptr(t) for t in node.inputs[1:]]
    wb = dict(zip(["expand", "depthwise", "project"] if p["has_expand"] else ["depthwise", "project"],
                  zip(node.inputs[1::2], node.inputs[2::2], strict=True), strict=True))
    fields: dict[str, object] = {}
    for key, value in p.items():
        if key.endswith("_q"):
            stage = key[:-2]
            mult, shift = value
            if len(mult) == 0:
                fields[key] = "{NULL, NULL, NULL}"
                continue
            name = next(s["name"] for s in node.attrs["stages"] if s["role"] == stage)
            # the set-up packs (the block is frozen: fuse_frozen_blocks) of the stages that read them
            # (mt_nn_ib.h): the 1x1 convs (the projection, a 1x1 expansion or one over patches of at most
            # PATCH_MAX inputs) and the depthwise on the ring's plane rows (with an expansion)
            e = p[stage]
            window = e["kernel_h"] * e["kernel_w"] * e["in_c"]
            read = {"project": True, "expand": e["kernel_h"] == e["kernel_w"] == 1 or window <= PATCH_MAX,
                    "depthwise": p["has_expand"]}
            used = ctx.packs != "off" and read[stage]
            # the 1x1 stages with their rows pre-extended (2 bytes per weight) where the budget allows:
            # the block calls them once per row
            extended = int(stage != "depthwise" and ctx.extended_rows(f"{node.name}:{stage}"))
            pack = (ctx.conv_pack(name, e, mult, shift, *wb[stage], extended=extended)
                    if used and packs.conv_pack_size(e, extended) else "NULL")
            fields[key] = (f"{{{ctx.const_array('QM', name, 'int32_t', mult)}, "
                           f"{ctx.const_array('QS', name, 'int32_t', shift)}, {pack}}}")
        elif isinstance(value, dict):
            fields[key] = "{" + ", ".join(f".{k} = {v}" for k, v in value.items()) + "}"
        else:
            fields[key] = value
    params = ctx.struct("mt_inverted_bottleneck_params", "IB", node.name, fields)
    if not p["has_expand"]:
        consts = ["NULL", "NULL", *consts]
    stages = " -> ".join(s["name"] for s in node.attrs["stages"])
    if ctx.graph.meta.get("stream_input") == node.name:  # compiler/stream_input.py: input rows pulled on demand
        size = input_ring_bytes(ctx.graph)
        at = _free_arena_gap(ctx, node, size)
        ring = ([f"    int8_t *input_ring = (int8_t *)(mt_arena.b + {at}); /* kernel_h input rows: free arena */"]
                if at is not None else [f"    int8_t input_ring[{size}]; /* kernel_h input rows (no arena gap) */"])
        return [f"/* {stages}: input streamed row by row, {node.attrs['scratch_bytes']} B ring */", "{", *ring,
                "    " + _try(ctx, "mt_inverted_bottleneck_stream_s8", "&" + params, "mt_read", "mt_read_ctx",
                              "input_ring", *consts, ctx.ptr(node.outputs[0]), ctx.ptr(node.outputs[1])), "}"]
    return [f"/* {stages}: row-streamed, {node.attrs['scratch_bytes']} B ring */",
            _try(ctx, "mt_inverted_bottleneck_s8", "&" + params, ctx.ptr(node.inputs[0]), *consts,
                 ctx.ptr(node.outputs[0]), ctx.ptr(node.outputs[1]))]


def _inverted_bottleneck_grad(node: Node, ctx: CContext) -> list[str]:
    """One call to the channel-by-channel block backward (compiler/stream_block_grads.py); with a
    trained expansion its kept rows are updated inside (the UPDATE_WEIGHT node emits nothing)."""
    p = twins.inverted_bottleneck_grad_params(node, ctx.graph)
    fields = {**p, "depthwise": "{" + ", ".join(f".{k} = {v}" for k, v in p["depthwise"].items()) + "}",
              "input_scale": c_float(p["input_scale"])}
    params = ctx.struct("mt_inverted_bottleneck_grad_params", "IG", node.name, fields)
    g, w_p, m_d, w_d, m_e, w_e = node.inputs[:6]
    outs = node.attrs["outputs"]
    rows = ctx.rows_table(w_e)
    expand = ["NULL", rows] if rows is not None else [ctx.ptr(w_e), "NULL"]
    opt = {r: ctx.ptr(outs[r]) if outs.get(r) else "NULL" for r in ("grad_input", "depthwise_bias_grad",
                                                                   "expand_bias_grad")}
    lines = [f"/* {node.name}: one expanded channel at a time, {node.attrs['scratch_bytes']} B of planes */", "{"]
    update, x = "NULL", "NULL"
    if outs.get("grad_weight"):
        upd = next(n for n in ctx.graph.nodes if n.op == Op.UPDATE_WEIGHT and n.inputs[1] == outs["grad_weight"])
        layer = node.attrs["layers"]["expand"]
        index, count = ctx.channels(f"{layer}.weight", node.attrs["channels"], ctx.graph.tensors[w_e].shape[0])
        factors = ctx.const_array("F", w_e, "float", upd.attrs["factors"])
        lines += [_update_params(upd, ctx),
                  f"    const mt_expand_update eu = {{.weights = {ctx.ptr(w_e)}, .weights_sliced = "
                  f"{1 if rows is not None else 0}, .factor = {factors}, .index = {index}, .count = {count}, "
                  f".u = u, .grad_row = {ctx.ptr(outs['grad_weight'])}}};"]
        update, x = "&eu", ctx.ptr(node.inputs[6])
    lines += ["    " + _try(ctx, "mt_inverted_bottleneck_grad_f32", "&" + params, ctx.ptr(g), ctx.ptr(w_p),
                             ctx.weight_scales(w_p), ctx.ptr(m_d), ctx.ptr(w_d), ctx.weight_scales(w_d), ctx.ptr(m_e),
                             *expand, ctx.weight_scales(w_e), x, update, opt["grad_input"],
                             opt["depthwise_bias_grad"], opt["expand_bias_grad"],
                             "(float *)" + ctx.ptr(node.outputs[-1])), "}"]
    return lines


def _or_error(rule: EmitRule) -> EmitRule:
    """``rule``, or for a node with ``error_bits`` its integer-error rule (codegen/emit_error.py)."""
    def emit(node: Node, ctx: CContext) -> list[str]:
        return (ERROR_EMIT_RULES[node.op] if node.attrs.get("error_bits") else rule)(node, ctx)
    return emit


EMIT_RULES: dict[Op, EmitRule] = {
    Op.CONV2D: _conv2d,
    Op.FULLY_CONNECTED: _fully_connected,
    Op.ADD: _add,
    Op.GLOBAL_AVG_POOL: _global_avg_pool,
    Op.RESHAPE: _reshape,
    Op.DEQUANTIZE: _dequantize,
    Op.SOFTMAX_CROSS_ENTROPY: _softmax_cross_entropy,
    Op.LOSS_GRAD: _loss_grad,
    Op.MEAN_SQUARED_ERROR: _mean_squared_error,
    Op.MSE_GRAD: _mse_grad,
    Op.CLAMP_MASK: _clamp_mask,
    Op.MASK_GRAD: _or_error(_mask_grad),
    Op.CONV2D_GRAD_INPUT: _or_error(_conv_grad_input),
    Op.CONV2D_GRAD_WEIGHT: _grad_weight,
    Op.FC_GRAD_INPUT: _or_error(_fc_grad_input),
    Op.FC_GRAD_WEIGHT: _grad_weight,
    Op.BIAS_GRAD: _or_error(_bias_grad),
    Op.AVG_POOL_GRAD: _avg_pool_grad,
    Op.GRAD_ACCUMULATE: _grad_accumulate,
    Op.SLICE_CHANNELS: _slice_channels,
    Op.UPDATE_WEIGHT: _update,
    Op.UPDATE_BIAS: _update,
    Op.FUSED_INVERTED_BOTTLENECK: _fused_inverted_bottleneck,
    Op.INVERTED_BOTTLENECK_GRAD: _inverted_bottleneck_grad,
    **WINDOW_EMIT_RULES,  # pools, PAD, CONCAT, SOFTMAX and their gradients (codegen/emit_window.py)
}
