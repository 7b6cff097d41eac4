"""Python twins of the C runtime's queries, and the IR -> kernel parameter translation.

* ``*_get_buffer_size``: the same numbers (bytes) as the C functions of the same name in
  ``include/mt_runtime.h``; ``tests/test_runtime_twins.py`` checks each against the C.
* ``conv_params`` / ``fc_params`` / ``add_params_struct`` / ``avg_pool_params_struct``:
  the field values of the C param structs for an IR node, with the compile-time
  multipliers taken from ``interp/reference.py`` (never re-derived). The code generator
  and the tests use these, so the C sees exactly what the reference interpreter uses.

The per-channel factors f_c of the update kernels come from
``microtrain.train.rounding.update_factors`` (the one Python statement of the rule).
"""

from __future__ import annotations

import numpy as np

from microtrain.interp.reference import add_params, avg_pool_params, output_multipliers
from microtrain.ir.graph import Graph, Node

FLOAT_BYTES = 4

# mt_status values (include/mt_runtime.h)
MT_OK, MT_ERR_NULL, MT_ERR_SHAPE, MT_ERR_PARAM, MT_ERR_OVERFLOW = 0, -1, -2, -3, -4
STATUS_NAMES = {0: "MT_OK", -1: "MT_ERR_NULL", -2: "MT_ERR_SHAPE", -3: "MT_ERR_PARAM", -4: "MT_ERR_OVERFLOW"}
# mt_rounding
MT_ROUND_NEAREST, MT_ROUND_STOCHASTIC = 0, 1
ROUNDING_MODES = {"nearest": MT_ROUND_NEAREST, "stochastic": MT_ROUND_STOCHASTIC}

# Largest dot-product length an int32 accumulator of an int8 kernel may sum (mt_nn.h).
MAX_DOT_LENGTH = 65536


# --- buffer size queries (bytes) ----------------------------------------------------------

def clamp_mask_get_buffer_size(n: int) -> int:
    """Twin of mt_clamp_mask_get_buffer_size: one bit per element, rounded up to bytes."""
    return 0 if n <= 0 else (n + 7) // 8


def conv2d_grad_weight_get_buffer_size(kernel_h: int, kernel_w: int, in_c: int, groups: int,
                                       num_channels: int) -> int:
    """Twin of mt_conv2d_grad_weight_get_buffer_size (also depthwise: groups == in_c)."""
    if groups < 1 or num_channels <= 0:
        return 0
    return num_channels * kernel_h * kernel_w * (in_c // groups) * FLOAT_BYTES


def fully_connected_grad_weight_get_buffer_size(in_c: int, num_channels: int) -> int:
    """Twin of mt_fully_connected_grad_weight_get_buffer_size."""
    return 0 if num_channels <= 0 else num_channels * in_c * FLOAT_BYTES


def depthwise_conv2d_grad_input_inplace_get_buffer_size(in_h: int, in_w: int) -> int:
    """Twin of mt_depthwise_conv2d_grad_input_inplace_get_buffer_size: one channel plane of floats."""
    return 0 if in_h <= 0 or in_w <= 0 else in_h * in_w * FLOAT_BYTES


def gather_channels_get_buffer_size(spatial: int, count: int) -> int:
    """Twin of mt_gather_channels_get_buffer_size: the sliced int8 copy of kept channels."""
    return 0 if spatial <= 0 or count <= 0 else spatial * count


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
    mult, shift = avg_pool_params(x, y)
    return {"in_h": x.shape[1], "in_w": x.shape[2], "c": x.shape[3],
            "input_zero_point": x.quant.z, "output_zero_point": y.quant.z, "multiplier": mult, "shift": shift,
            "act_min": int(node.attrs.get("act_min", -128)), "act_max": int(node.attrs.get("act_max", 127))}



# --- FUSED_INVERTED_BOTTLENECK (mt_inverted_bottleneck_s8; compiler/fuse_frozen_blocks.py) ---

def inverted_bottleneck_params(node: Node, graph: Graph) -> dict:
    """Fields of ``mt_inverted_bottleneck_params`` for a FUSED_INVERTED_BOTTLENECK node.

    Nested: ``expand``/``depthwise``/``project`` are ``conv_params`` dicts of the original
    convs (all zero when the block has no expansion), ``*_q`` their (multiplier, shift)
    arrays, ``add`` the ``add_params_struct`` of the residual ADD (all zero without one).
    """
    from microtrain.interp.fused import block_subgraph, stage  # registers the op's rules

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


def inverted_bottleneck_get_buffer_size(p: dict) -> int:
    """Twin of mt_inverted_bottleneck_get_buffer_size: ring of min(kernel_h, in_h) expanded rows
    (with an expansion), one pixel of depthwise output, one pixel of projection output (with a
    residual)."""
    d, pr = p["depthwise"], p["project"]
    ring = min(d["kernel_h"], d["in_h"]) * d["in_w"] * d["in_c"] if p["has_expand"] else 0
    return ring + d["out_c"] + (pr["out_c"] if p["has_residual"] else 0)


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


# --- INVERTED_BOTTLENECK_GRAD (mt_inverted_bottleneck_grad_f32; compiler/stream_block_grads.py) ---

def inverted_bottleneck_grad_get_buffer_size(in_h: int, in_w: int, out_h: int, out_w: int, per_pass: int) -> int:
    """Twin of mt_inverted_bottleneck_grad_get_buffer_size: the planes of one pass of ``per_pass``
    (1 to 4) expanded channels at the depthwise output (out_h x out_w) and at its input (in_h x in_w)."""
    if min(in_h, in_w, out_h, out_w) <= 0 or not 1 <= per_pass <= 4:
        return 0
    return per_pass * (out_h * out_w + in_h * in_w) * FLOAT_BYTES


def inverted_bottleneck_grad_params(node: Node, graph: Graph) -> dict:
    """Fields of ``mt_inverted_bottleneck_grad_params`` for an INVERTED_BOTTLENECK_GRAD node."""
    layers = node.attrs["layers"]
    expand = graph.node(layers["expand"])
    x = graph.tensors[expand.inputs[0]]
    return {"depthwise": conv_params(graph.node(layers["depthwise"]), graph),
            "project_out_c": graph.tensors[graph.node(layers["project"]).outputs[0]].shape[3],
            "expand_in_c": x.shape[3], "input_zero_point": x.quant.z, "input_scale": float(np.float32(x.quant.s)),
            "channels_per_pass": int(node.attrs["per_pass"])}
