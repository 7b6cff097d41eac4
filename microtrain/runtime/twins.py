"""Python twins of the C runtime's parameters: what the generated C passes each kernel.

* ``conv_params`` / ``fc_params`` / ``add_params_struct`` / ``avg_pool_params_struct`` /
  ``inverted_bottleneck_params`` / ``inverted_bottleneck_grad_params``: the field values of
  the C param structs for an IR node;
* ``output_multipliers`` / ``add_params`` / ``avg_pool_params``: the compile-time fixed-point
  multipliers and shifts, computed once here and used by every executor (the reference and
  batched interpreters, the simulator) and by the code generator, so the C sees exactly what
  the reference interpreter uses;
* the C ABI's constants (status codes, rounding modes, the accumulator bound).

The twins of the buffer-size queries are in ``ir/buffer_sizes.py`` (shape arithmetic, used
by the shape rules); the fused kernel's aliasing rule is the planner's
(``compiler/inplace.py``). The per-channel factors f_c of the update kernels come from
``microtrain.runtime.rounding.update_factors`` (the one Python statement of the rule).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from microtrain import quant
from microtrain.ir.fused_blocks import block_subgraph, stage
from microtrain.ir.graph import Graph, Node, Tensor
from microtrain.ir.ops import Op
from microtrain.runtime.rounding import ROUNDINGS

# mt_status values (include/mt_runtime.h)
MT_OK, MT_ERR_NULL, MT_ERR_SHAPE, MT_ERR_PARAM, MT_ERR_OVERFLOW = 0, -1, -2, -3, -4
STATUS_NAMES = {0: "MT_OK", -1: "MT_ERR_NULL", -2: "MT_ERR_SHAPE", -3: "MT_ERR_PARAM", -4: "MT_ERR_OVERFLOW"}
# mt_rounding
ROUNDING_MODES = {name: value for value, name in enumerate(ROUNDINGS)}  # mt_rounding: MT_ROUND_NEAREST = 0, ...

# Largest dot-product length an int32 accumulator of an int8 kernel may sum (mt_nn.h).
MAX_DOT_LENGTH = 65536


# --- compile-time multipliers (fixed point) ----------------------------------------------

def output_multiplier_reals(x: Tensor, w: Tensor, y: Tensor) -> np.ndarray:
    """M_c = s_x * s_w[c] / s_y per output channel (CONV2D, FULLY_CONNECTED)."""
    return x.quant.s * w.quant.scales() / y.quant.s


def output_multipliers(x: Tensor, w: Tensor, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (multiplier, shift) for M_c = s_x * s_w[c] / s_y (compile-time)."""
    return quant.quantize_multipliers(output_multiplier_reals(x, w, y))


ADD_LEFT_SHIFT = 20


def add_multiplier_reals(a: Tensor, b: Tensor, y: Tensor) -> tuple[float, float, float]:
    """ADD's three multipliers: both inputs to 2*max(s_a, s_b) / 2^20 units, then to s_y."""
    twice_max = 2.0 * max(a.quant.s, b.quant.s)
    return a.quant.s / twice_max, b.quant.s / twice_max, twice_max / ((1 << ADD_LEFT_SHIFT) * y.quant.s)


def add_params(a: Tensor, b: Tensor, y: Tensor) -> dict[str, int]:
    """TFLite int8 ADD parameters: both inputs rescaled to 2*max(s_a, s_b) / 2^20 units."""
    ra, rb, ry = add_multiplier_reals(a, b, y)
    ma, sa = quant.quantize_multiplier(ra)
    mb, sb = quant.quantize_multiplier(rb)
    my, sy = quant.quantize_multiplier(ry)
    return {"left_shift": ADD_LEFT_SHIFT, "a_mult": ma, "a_shift": sa, "b_mult": mb, "b_shift": sb,
            "y_mult": my, "y_shift": sy}


def avg_pool_multiplier_real(x: Tensor, y: Tensor, rule: str = "multiplier") -> float:
    """The real multiplier GLOBAL_AVG_POOL quantizes: ``s_x / (s_y * H * W)``, or ``s_x / s_y``
    with ``rule="tflm"`` (TFLM's MEAN divides by H * W in integers afterwards)."""
    if rule == "tflm":
        return x.quant.s / y.quant.s
    if rule != "multiplier":
        raise ValueError(f"GLOBAL_AVG_POOL rule {rule!r}: 'multiplier' or 'tflm'")
    return x.quant.s / (y.quant.s * x.shape[1] * x.shape[2])


def avg_pool_params(x: Tensor, y: Tensor, rule: str = "multiplier") -> tuple[int, int]:
    """(multiplier, shift) of GLOBAL_AVG_POOL: ``s_x / (s_y * H * W)`` quantized once, or with
    ``rule="tflm"`` TFLM's MEAN (``quant.tflm_mean_multiplier``: the division by H * W in integers)."""
    if rule == "tflm":
        return quant.tflm_mean_multiplier(x.quant.s, y.quant.s, x.shape[1] * x.shape[2])
    return quant.quantize_multiplier(avg_pool_multiplier_real(x, y, rule))


# The real multipliers each op of an inference graph requantizes with, from its (node, inputs,
# outputs): the table behind ``check_requantization``, computed by the helpers above.
REQUANT_REALS: dict[Op, Callable[[Node, list[Tensor], list[Tensor]], np.ndarray]] = {
    Op.CONV2D: lambda node, ins, outs: output_multiplier_reals(ins[0], ins[1], outs[0]),
    Op.FULLY_CONNECTED: lambda node, ins, outs: output_multiplier_reals(ins[0], ins[1], outs[0]),
    Op.ADD: lambda node, ins, outs: np.array(add_multiplier_reals(ins[0], ins[1], outs[0])),
    Op.GLOBAL_AVG_POOL: lambda node, ins, outs: np.array(
        [avg_pool_multiplier_real(ins[0], outs[0], node.attrs.get("rule", "multiplier"))]),
}


def check_requantization(graph: Graph) -> Graph:
    """Every requantization multiplier of ``graph`` must be representable as int32 mantissa and
    shift: in [2^-32, 2^30). Larger ones cannot be stored; smaller ones round to 0, so the node's
    output would be its zero point whatever the input (scales of 1e-300 or 1e30 in a model file).
    Raises ValueError naming the node, op and scales; returns the graph."""
    lo, hi = 2.0**-32, 2.0**30
    for node in graph.nodes:
        rule = REQUANT_REALS.get(node.op)
        if rule is None:
            continue
        ins = [graph.tensors[n] for n in node.inputs]
        outs = [graph.tensors[n] for n in node.outputs]
        with np.errstate(all="ignore"):
            reals = np.asarray(rule(node, ins, outs), dtype=np.float64).ravel()
        bad = ~(np.isfinite(reals) & (reals >= lo) & (reals < hi))
        if bad.any():
            r = float(reals[np.flatnonzero(bad)[0]])
            scales = ", ".join(f"{t.name} {t.quant.scale[0]:.3g}" for t in (*ins, *outs)
                               if t.quant is not None and not t.quant.is_per_channel)
            raise ValueError(f"node {node.name!r} ({node.op.value}): requantization multiplier {r:.3g} is outside "
                             f"the representable [2^-32, 2^30) (scales: {scales}); the model's quantization "
                             "scales are out of range")
    return graph


# --- kernel parameters of IR nodes --------------------------------------------------------

def conv_params(node: Node, graph: Graph) -> dict[str, int]:
    """Fields of ``mt_conv_params`` for a CONV2D node."""
    x, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
    y = graph.tensors[node.outputs[0]]
    top, left, bottom, right = node.attrs.get("padding", (0, 0, 0, 0))
    sh, sw = node.attrs.get("stride", (1, 1))
    return {"in_h": x.shape[1], "in_w": x.shape[2], "in_c": x.shape[3],
            "out_h": y.shape[1], "out_w": y.shape[2], "out_c": y.shape[3],
            "kernel_h": w.shape[1], "kernel_w": w.shape[2], "stride_h": int(sh), "stride_w": int(sw),
            "pad_top": int(top), "pad_left": int(left), "pad_bottom": int(bottom), "pad_right": int(right),
            "groups": int(node.attrs.get("groups", 1)),
            "input_zero_point": x.quant.z, "output_zero_point": y.quant.z,
            "act_min": int(node.attrs.get("act_min", -128)), "act_max": int(node.attrs.get("act_max", 127))}


def fc_params(node: Node, graph: Graph) -> dict[str, int]:
    """Fields of ``mt_fc_params`` for a FULLY_CONNECTED node."""
    x, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
    y = graph.tensors[node.outputs[0]]
    return {"in_c": w.shape[1], "out_c": w.shape[0],
            "input_zero_point": x.quant.z, "output_zero_point": y.quant.z,
            "act_min": int(node.attrs.get("act_min", -128)), "act_max": int(node.attrs.get("act_max", 127))}


def per_channel_quant(node: Node, graph: Graph) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, shift) int32 arrays of ``mt_per_channel_quant`` for a CONV2D/FC node."""
    x, w = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
    y = graph.tensors[node.outputs[0]]
    mult, shift = output_multipliers(x, w, y)
    return mult.astype(np.int32), shift.astype(np.int32)


def add_params_struct(node: Node, graph: Graph) -> dict[str, int]:
    """Fields of ``mt_add_params`` for an ADD node (multipliers from reference.add_params)."""
    a, b = graph.tensors[node.inputs[0]], graph.tensors[node.inputs[1]]
    y = graph.tensors[node.outputs[0]]
    p = add_params(a, b, y)
    return {"size": int(np.prod(y.shape)), "a_zero_point": a.quant.z, "b_zero_point": b.quant.z,
            "output_zero_point": y.quant.z, "left_shift": p["left_shift"],
            "a_multiplier": p["a_mult"], "a_shift": p["a_shift"], "b_multiplier": p["b_mult"],
            "b_shift": p["b_shift"], "output_multiplier": p["y_mult"], "output_shift": p["y_shift"],
            "act_min": int(node.attrs.get("act_min", -128)), "act_max": int(node.attrs.get("act_max", 127))}


def avg_pool_params_struct(node: Node, graph: Graph) -> dict[str, int]:
    """Fields of ``mt_avg_pool_params`` for a GLOBAL_AVG_POOL node."""
    x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    mult, shift = avg_pool_params(x, y, node.attrs.get("rule", "multiplier"))
    return {"in_h": x.shape[1], "in_w": x.shape[2], "c": x.shape[3],
            "input_zero_point": x.quant.z, "output_zero_point": y.quant.z, "multiplier": mult, "shift": shift,
            "act_min": int(node.attrs.get("act_min", -128)), "act_max": int(node.attrs.get("act_max", 127))}


def pool_params_struct(node: Node, shape: tuple[int, ...], out_shape: tuple[int, ...]) -> dict[str, int]:
    """Fields of ``mt_pool_params`` for an AVG_POOL2D / MAX_POOL2D node (or its gradient) on ``shape``."""
    fh, fw = node.attrs["filter"]
    sh, sw = node.attrs.get("stride", (1, 1))
    top, left, _, _ = node.attrs.get("padding", (0, 0, 0, 0))
    return {"in_h": shape[1], "in_w": shape[2], "c": shape[3], "out_h": out_shape[1], "out_w": out_shape[2],
            "filter_h": int(fh), "filter_w": int(fw), "stride_h": int(sh), "stride_w": int(sw), "pad_top": int(top),
            "pad_left": int(left), "act_min": int(node.attrs.get("act_min", -128)),
            "act_max": int(node.attrs.get("act_max", 127)),
            "count_include_pad": int(bool(node.attrs.get("count_include_pad", False)))}


def pad_params_struct(node: Node, shape: tuple[int, ...]) -> dict[str, int]:
    """Fields of ``mt_pad_params`` for a PAD node (or its gradient) on an NHWC ``shape``."""
    (_, _), (top, bottom), (left, right), (front, back) = node.attrs["pads"]
    return {"in_h": shape[1], "in_w": shape[2], "in_c": shape[3], "pad_top": int(top), "pad_bottom": int(bottom),
            "pad_left": int(left), "pad_right": int(right), "pad_front": int(front), "pad_back": int(back),
            "pad_value": int(node.attrs.get("pad_value", 0))}


def concat_part_struct(out_shape: tuple[int, ...], axis: int, offset: int, size: int) -> dict[str, int]:
    """Fields of ``mt_concat_params`` for the input of CONCAT at [offset, offset + size) along ``axis``."""
    inner = int(np.prod(out_shape[axis + 1:], dtype=np.int64))
    return {"outer": int(np.prod(out_shape[:axis], dtype=np.int64)), "in_inner": size * inner,
            "out_inner": out_shape[axis] * inner, "offset": offset * inner}


def softmax_params_struct(node: Node, graph: Graph) -> dict[str, int]:
    """Fields of ``mt_softmax_params`` for a SOFTMAX node (``quant.softmax_params``)."""
    x = graph.tensors[node.inputs[0]]
    mult, shift, diff_min = quant.softmax_params(node.attrs.get("beta", 1.0), x.quant.s)
    return {"rows": x.size // x.shape[-1], "size": x.shape[-1], "input_multiplier": mult,
            "input_left_shift": shift, "diff_min": diff_min}


# --- FUSED_INVERTED_BOTTLENECK (mt_inverted_bottleneck_s8; compiler/fuse_frozen_blocks.py) ---

def inverted_bottleneck_params(node: Node, graph: Graph) -> dict:
    """Fields of ``mt_inverted_bottleneck_params`` for a FUSED_INVERTED_BOTTLENECK node.

    Nested: ``expand``/``depthwise``/``project`` are ``conv_params`` dicts of the original
    convs (all zero when the block has no expansion), ``*_q`` their (multiplier, shift)
    arrays, ``add`` the ``add_params_struct`` of the residual ADD (all zero without one).
    """
    sub = block_subgraph(node, graph)
    out: dict = {"has_expand": 0, "has_residual": 0, "shortcut_first": 0}
    zero_conv = dict.fromkeys(conv_params(sub.node(stage(node, "depthwise")["name"]), sub), 0)
    for role in ("expand", "depthwise", "project"):
        s = stage(node, role)
        if s is None:
            out[role], out[f"{role}_q"] = zero_conv, (np.zeros(0, np.int32), np.zeros(0, np.int32))
            continue
        layer = sub.node(s["name"])
        out[role], out[f"{role}_q"] = conv_params(layer, sub), per_channel_quant(layer, sub)
    out["has_expand"] = int(stage(node, "expand") is not None)
    res = stage(node, "residual")
    if res is not None:
        out["has_residual"], out["shortcut_first"] = 1, int(bool(node.attrs["shortcut_first"]))
        out["add"] = add_params_struct(sub.node(res["name"]), sub)
    else:
        out["add"] = dict.fromkeys(("size a_zero_point b_zero_point output_zero_point left_shift a_multiplier a_shift "
                                    "b_multiplier b_shift output_multiplier output_shift act_min act_max").split(), 0)
    return out


# --- INVERTED_BOTTLENECK_GRAD (mt_inverted_bottleneck_grad_f32; compiler/stream_block_grads.py) ---

def inverted_bottleneck_grad_params(node: Node, graph: Graph) -> dict:
    """Fields of ``mt_inverted_bottleneck_grad_params`` for an INVERTED_BOTTLENECK_GRAD node."""
    layers = node.attrs["layers"]
    expand = graph.node(layers["expand"])
    x = graph.tensors[expand.inputs[0]]
    return {"depthwise": conv_params(graph.node(layers["depthwise"]), graph),
            "project_out_c": graph.tensors[graph.node(layers["project"]).outputs[0]].shape[3],
            "expand_in_c": x.shape[3], "input_zero_point": x.quant.z, "input_scale": float(np.float32(x.quant.s)),
            "channels_per_pass": int(node.attrs["per_pass"])}
