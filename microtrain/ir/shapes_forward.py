"""Shape rules of the forward ops (int8 inference, dequantize, loss): abstract evaluation.

Each rule checks a node's operands and returns the shapes and dtypes of its outputs
(``OutSpec``); ``ir/registry.py`` lists them in ``SHAPE_RULES``. The op meanings are in
``ir/ops.py``.
"""

from __future__ import annotations

import numpy as np

from microtrain.ir.check import OutSpec, arity, expect
from microtrain.ir.graph import Node, Tensor
from microtrain.ir.ops import Op


def _per_tensor_int8(node: Node, t: Tensor, role: str) -> None:
    expect(t.dtype == "int8", node, f"{role} {t.name!r} must be int8, is {t.dtype}")
    expect(t.quant is not None and not t.quant.is_per_channel, node,
           f"{role} {t.name!r} needs per-tensor quantization")
    expect(t.quant.scale[0] > 0, node, f"{role} {t.name!r} has non-positive scale {t.quant.scale[0]}")
    expect(-128 <= t.quant.zero_point[0] <= 127, node,
           f"{role} {t.name!r} zero point {t.quant.zero_point[0]} outside int8")


def _weight_bias(node: Node, w: Tensor, b: Tensor, out_channels: int) -> None:
    expect(w.dtype == "int8", node, f"weight {w.name!r} must be int8, is {w.dtype}")
    q = w.quant
    expect(q is not None and q.is_per_channel and q.axis == 0, node,
           f"weight {w.name!r} needs per-channel quantization along axis 0")
    expect(len(q.scale) == out_channels, node,
           f"weight {w.name!r} has {len(q.scale)} scales for {out_channels} output channels")
    expect(all(s > 0 and np.isfinite(s) for s in q.scale), node,
           f"weight {w.name!r} has a non-positive or non-finite scale")
    expect(all(z == 0 for z in q.zero_point), node, f"weight {w.name!r} must be symmetric (zero point 0)")
    expect(b.dtype == "int32", node, f"bias {b.name!r} must be int32, is {b.dtype}")
    expect(b.shape == (out_channels,), node,
           f"bias {b.name!r} has shape {b.shape}, expected ({out_channels},)")


def _act_range(node: Node) -> None:
    lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
    expect(-128 <= lo <= hi <= 127, node, f"activation range [{lo}, {hi}] is not inside int8")


def conv_output_hw(h: int, w: int, kh: int, kw: int, stride: tuple[int, int],
                   padding: tuple[int, int, int, int]) -> tuple[int, int]:
    top, left, bottom, right = padding
    return (h + top + bottom - kh) // stride[0] + 1, (w + left + right - kw) // stride[1] + 1


def _conv2d(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 3)
    x, w, b = ins
    _per_tensor_int8(node, x, "input")
    expect(len(x.shape) == 4 and x.shape[0] == 1, node, f"input must be NHWC with batch 1, is {x.shape}")
    expect(len(w.shape) == 4, node, f"weight must be OHWI, has shape {w.shape}")
    out_c, kh, kw, in_per_group = w.shape
    groups = int(node.attrs.get("groups", 1))
    expect(groups >= 1 and x.shape[3] % groups == 0 and out_c % groups == 0, node,
           f"groups={groups} does not divide input channels {x.shape[3]} and output channels {out_c}")
    expect(in_per_group * groups == x.shape[3], node,
           f"weight {w.name!r} expects {in_per_group * groups} input channels, input has {x.shape[3]}")
    _weight_bias(node, w, b, out_c)
    stride = tuple(node.attrs.get("stride", (1, 1)))
    padding = tuple(node.attrs.get("padding", (0, 0, 0, 0)))
    expect(len(stride) == 2 and min(stride) >= 1, node, f"bad stride {stride}")
    expect(len(padding) == 4 and min(padding) >= 0, node, f"bad padding {padding}")
    oh, ow = conv_output_hw(x.shape[1], x.shape[2], kh, kw, stride, padding)
    expect(oh >= 1 and ow >= 1, node, f"kernel {kh}x{kw} larger than padded input {x.shape[1:3]}")
    _act_range(node)
    return [((1, oh, ow, out_c), "int8")]


def _fully_connected(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 3)
    x, w, b = ins
    _per_tensor_int8(node, x, "input")
    expect(len(x.shape) == 2 and x.shape[0] == 1, node, f"input must be [1, C], is {x.shape}")
    expect(len(w.shape) == 2 and w.shape[1] == x.shape[1], node,
           f"weight {w.name!r} shape {w.shape} does not take {x.shape[1]} inputs")
    _weight_bias(node, w, b, w.shape[0])
    _act_range(node)
    return [((1, w.shape[0]), "int8")]


def _add(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 2)
    a, b = ins
    _per_tensor_int8(node, a, "input a")
    _per_tensor_int8(node, b, "input b")
    expect(a.shape == b.shape, node, f"operand shapes differ: {a.shape} vs {b.shape}")
    _act_range(node)
    return [(a.shape, "int8")]


def _global_avg_pool(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 1)
    (x,) = ins
    _per_tensor_int8(node, x, "input")
    expect(len(x.shape) == 4, node, f"input must be NHWC, is {x.shape}")
    return [((1, 1, 1, x.shape[3]), "int8")]


def _reshape(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 1)
    (x,) = ins
    shape = tuple(int(d) for d in node.attrs["shape"])
    expect(int(np.prod(shape)) == x.size, node, f"cannot reshape {x.shape} to {shape}")
    return [(shape, x.dtype)]


def _dequantize(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 1)
    (x,) = ins
    _per_tensor_int8(node, x, "input")
    return [(x.shape, "float32")]


def _softmax_cross_entropy(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 2)
    logits, label = ins
    expect(logits.dtype == "float32" and len(logits.shape) == 2, node,
           f"logits must be float32 [1, K], are {logits.dtype} {logits.shape}")
    expect(label.dtype == "int32" and label.shape == (1,), node,
           f"label must be int32 [1], is {label.dtype} {label.shape}")
    return [((1,), "float32")]


def _mean_squared_error(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 2)
    pred, target = ins
    expect(pred.dtype == "float32" and len(pred.shape) == 2, node,
           f"prediction must be float32 [1, N], is {pred.dtype} {pred.shape}")
    _per_tensor_int8(node, target, "target")
    expect(target.size == pred.size, node, f"target {target.shape} and prediction {pred.shape} differ in size")
    return [((1,), "float32")]


FORWARD_SHAPE_RULES = {
    Op.CONV2D: _conv2d,
    Op.FULLY_CONNECTED: _fully_connected,
    Op.ADD: _add,
    Op.GLOBAL_AVG_POOL: _global_avg_pool,
    Op.RESHAPE: _reshape,
    Op.DEQUANTIZE: _dequantize,
    Op.SOFTMAX_CROSS_ENTROPY: _softmax_cross_entropy,
    Op.MEAN_SQUARED_ERROR: _mean_squared_error,
}


