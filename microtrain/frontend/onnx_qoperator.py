"""ONNX QOperator rules: integer ops carrying their own scales and zero points.

Each maps onto one FloatOp with the op's int8 weights and int32 bias kept (``wq``, ``bq``)
and its output's (scale, zero point) as ``given``; the input's quantization must be the one
its producer wrote (checked). onnxruntime's contrib ops are in the com.microsoft domain:

  QLinearConv(x, xs, xz, w, ws, wz, ys, yz[, B])        conv, bias int32 in xs*ws units
  QLinearMatMul(a, as, az, b, bs, bz, ys, yz)           linear, b [in, out], no bias
  QGemm(a, as, az, b, bs, bz[, c], ys, yz)              linear (transB), bias int32
  QLinearAdd(a, as, az, b, bs, bz, ys, yz)              add
  QLinearGlobalAveragePool(x, xs, xz, ys, yz)           global average pool (NCHW only)
"""

from __future__ import annotations

import numpy as np

from microtrain.frontend import onnx_import as oi
from microtrain.frontend.float_plan import FloatOp, UnsupportedError


def _input(low: oi.OnnxLowering, node, i: int, what: str = "input") -> str:
    """The value of input ``i`` (with its scale and zero point at i+1, i+2), checked."""
    key = low.value(node.input[i], node)
    q = low.qparams(node.input[i + 1], node.input[i + 2], node, what)
    low.set_given(key, q, node)
    return key


def _output(low: oi.OnnxLowering, node, ys: int) -> tuple[float, int]:
    if len(node.input) <= ys + 1 or not node.input[ys]:
        raise UnsupportedError(f"{low.where(node)}: a float output is not supported; quantize the output too")
    return low.qparams(node.input[ys], node.input[ys + 1], node, "output")


def _int_weight(low: oi.OnnxLowering, node, i: int, axis: int):
    q = low.const(node.input[i], node, "weight")
    scale = low.const(node.input[i + 1], node, "weight scale")
    zp = low.const(node.input[i + 2], node, "weight zero point") if node.input[i + 2] else None
    return oi.weight_int8(q, scale, zp, axis, low.where(node))


def _qlinear_conv(low: oi.OnnxLowering, node) -> None:
    x = _input(low, node, 0)
    wq, scales = _int_weight(low, node, 3, 0)
    geo, shape, one_d = oi._conv_geometry(low, node, low.shapes[x], wq.shape)
    if one_d:
        wq = wq[:, :, None, :]
    bq = (low.const(node.input[8], node, "bias").astype(np.int32) if len(node.input) > 8 and node.input[8]
          else np.zeros(wq.shape[0], np.int32))
    w = wq.astype(np.float64) * scales.reshape(-1, 1, 1, 1)
    b = bq.astype(np.float64) * low.given[x][0] * scales
    low.emit(FloatOp(low.layer_name(node), "conv", [x], node.output[0], w, b, geo, wq=wq, w_scales=scales, bq=bq),
             shape)
    low.set_given(node.output[0], _output(low, node, 6), node)


def _linear(low: oi.OnnxLowering, node, x: str, wq, scales, bq) -> None:
    w = wq.astype(np.float64) * scales.reshape(-1, 1)
    b = bq.astype(np.float64) * low.given[x][0] * scales
    oi._linear_op(low, node, x, w, wq, scales, b, bq, node.output[0])


def _qlinear_matmul(low: oi.OnnxLowering, node) -> None:
    x = _input(low, node, 0)
    wq, scales = _int_weight(low, node, 3, 1)
    _linear(low, node, x, wq.T, scales, np.zeros(wq.shape[1], np.int32))
    low.set_given(node.output[0], _output(low, node, 6), node)


def _qgemm(low: oi.OnnxLowering, node) -> None:
    a = oi.attrs(node)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0:
        raise UnsupportedError(f"{low.where(node)}: only QGemm with transA=0 and alpha=1 is supported")
    x = _input(low, node, 0)
    trans_b = a.get("transB", 0)
    wq, scales = _int_weight(low, node, 3, 0 if trans_b else 1)
    wq = wq if trans_b else wq.T
    bq = (low.const(node.input[6], node, "bias").astype(np.int32) if len(node.input) > 6 and node.input[6]
          else np.zeros(wq.shape[0], np.int32))
    _linear(low, node, x, wq, scales, bq)
    low.set_given(node.output[0], _output(low, node, 7), node)


def _qlinear_add(low: oi.OnnxLowering, node) -> None:
    a, b = _input(low, node, 0), _input(low, node, 3)
    if low.shapes[a] != low.shapes[b]:
        raise UnsupportedError(f"{low.where(node)}: operand shapes differ; broadcasting is not supported")
    low.emit(FloatOp(low.layer_name(node), "add", [a, b], node.output[0]), low.shapes[a])
    low.set_given(node.output[0], _output(low, node, 6), node)


def _qlinear_global_average_pool(low: oi.OnnxLowering, node) -> None:
    if oi.attrs(node).get("channels_last", 0):
        raise UnsupportedError(f"{low.where(node)}: channels_last=1 is not supported")
    x = _input(low, node, 0)
    low.emit(FloatOp(low.layer_name(node), "pool", [x], node.output[0]), (1, low.shapes[x][1], 1, 1))
    low.set_given(node.output[0], _output(low, node, 3), node)


QOPERATOR_RULES = {
    "QLinearConv": _qlinear_conv, "QLinearMatMul": _qlinear_matmul, "QGemm": _qgemm,
    "QLinearAdd": _qlinear_add, "QLinearGlobalAveragePool": _qlinear_global_average_pool,
}
