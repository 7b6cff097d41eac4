"""Import ONNX models (read with the ``onnx`` package: protobuf, nothing executed) into a FloatPlan.

Three forms, one rule table keyed by op type (``ONNX_RULES``):

* float (Conv, Gemm, MatMul, BatchNormalization, Relu, Clip, Add, GlobalAveragePool,
  ReduceMean, Flatten, Reshape, Identity, Dropout; MaxPool, AveragePool, Pad, Concat in
  ``onnx_window.py``): calibrated and quantized like PyTorch;
* QDQ, as ``onnxruntime.quantization.quantize_static(quant_format=QDQ)`` writes it: each
  activation passes QuantizeLinear -> DequantizeLinear, weights and biases are int8 / int32
  initializers behind a DequantizeLinear. Q/DQ pairs become ``FloatPlan.given`` (scale, zero
  point) of the value they quantize; the float op between them is lowered as usual, with
  its int8 weights (``FloatOp.wq``, per channel or per tensor) and int32 bias (``bq``);
* QOperator: QLinearConv, QLinearMatMul, QGemm, QLinearAdd, QLinearGlobalAveragePool,
  QLinearAveragePool, QLinearConcat (all but the first two in onnxruntime's com.microsoft
  domain), with int8 Flatten/Reshape/MaxPool/Pad between them.

uint8 activations are taken exactly as int8 (q - 128, zero point - 128). Weights must be
int8, symmetric (zero point 0) and in [-127, 127]. A relu that onnxruntime removed in QDQ
form is implicit in the output zero point (saturation at -128 is the clamp at 0), as in the
int8 IR. A symbolic batch dimension is taken as 1; any other dynamic dimension, an op not
in the table or a form outside these is an ``UnsupportedError`` naming the node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from microtrain.frontend.bn_fold import fold_bn_arrays
from microtrain.frontend.float_plan import FloatOp, FloatPlan, UnsupportedError


class OnnxLowering:
    def __init__(self, model) -> None:
        from onnx import numpy_helper

        self.graph = model.graph
        self.init: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        self.const_dq: dict[str, Any] = {}  # DequantizeLinear outputs of initializers: (q, scale, zp, axis)
        self.alias: dict[str, str] = {}
        self.producer: dict[str, FloatOp] = {}
        self.users: dict[str, int] = {}
        for n in model.graph.node:
            for i in n.input:
                self.users[i] = self.users.get(i, 0) + 1
        self.ops: list[FloatOp] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.flat_of: dict[str, tuple[int, int, int]] = {}
        self.given: dict[str, tuple[float, int]] = {}
        self.names: set[str] = set()
        self.qlinear = False
        self.input = self.output = ""
        self.rank = 4

    # --- helpers ---
    def where(self, node) -> str:
        return f"ONNX node {node.name or node.output[0]!r} ({node.op_type})"

    def value(self, name: str, node) -> str:
        if name not in self.alias:
            raise UnsupportedError(f"{self.where(node)}: input {name!r} is a constant or unknown; only tensors "
                                   "computed from the model input are supported there")
        return self.alias[name]

    def const(self, name: str, node, what: str) -> np.ndarray:
        if name in self.init:
            return self.init[name]
        raise UnsupportedError(f"{self.where(node)}: the {what} {name!r} must be a constant initializer")

    def layer_name(self, node) -> str:
        name = (node.name or node.output[0]).strip("/").removesuffix("_quant")
        parts = [p for p in name.split("/") if p]
        name = parts[-2] if len(parts) >= 2 else (parts[0] if parts else node.output[0])
        base, i = name, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def emit(self, op: FloatOp, shape: tuple[int, ...]) -> None:
        self.ops.append(op)
        self.producer[op.output] = op
        self.alias[op.output] = op.output
        self.shapes[op.output] = shape

    def qparams(self, scale_name: str, zp_name: str | None, node, what: str) -> tuple[float, int]:
        scale = self.const(scale_name, node, f"{what} scale")
        zp = self.const(zp_name, node, f"{what} zero point") if zp_name else np.zeros((), np.uint8)
        if scale.dtype.kind != "f":
            raise UnsupportedError(f"{self.where(node)}: the {what} scale is {scale.dtype}; a float scale is needed")
        if scale.size != 1 or zp.size != 1:
            raise UnsupportedError(f"{self.where(node)}: the {what} is quantized per axis; activations must be "
                                   "quantized per tensor")
        return float(scale.reshape(())), int8_zero_point(zp, self.where(node), what)

    def set_given(self, key: str, q: tuple[float, int], node) -> None:
        old = self.given.get(key)
        if old is not None and (abs(old[0] - q[0]) > 1e-6 * q[0] or old[1] != q[1]):
            raise UnsupportedError(f"{self.where(node)}: value {key!r} is quantized twice differently ({old} and {q})")
        self.given[key] = q

    def fold_target(self, node) -> FloatOp:
        key = self.value(node.input[0], node)
        op = self.producer.get(key)
        if op is None or self.users.get(node.input[0], 0) != 1 or key in self.given:
            raise UnsupportedError(f"{self.where(node)} cannot be folded into the op before it (its input is used "
                                   "elsewhere, quantized, or not computed by an op)")
        return op


def int8_zero_point(zp: np.ndarray, where: str, what: str) -> int:
    z = int(np.asarray(zp).reshape(-1)[0])
    if zp.dtype == np.uint8:
        return z - 128
    if zp.dtype == np.int8:
        return z
    raise UnsupportedError(f"{where}: the {what} is {zp.dtype}; only int8 and uint8 quantization are supported")


def weight_int8(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int, where: str):
    """(int8 weight, per-output-channel scales) of a quantized weight, checked against the int8 spec."""
    out = q.shape[axis]
    if q.dtype != np.int8:
        raise UnsupportedError(f"{where}: weights are {q.dtype}; the int8 spec needs symmetric int8 weights "
                               "(quantize with weight_type=QInt8)")
    if zp is not None and np.any(np.asarray(zp) != 0):
        raise UnsupportedError(f"{where}: weights are asymmetric (zero point != 0); the int8 spec needs symmetric "
                               "weights")
    if q.min() < -127:
        raise UnsupportedError(f"{where}: weights use -128; the int8 spec needs them in [-127, 127]")
    scales = np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(-1), (out,)).copy()
    if np.asarray(scale).size not in (1, out):
        raise UnsupportedError(f"{where}: {np.asarray(scale).size} weight scales for {out} output channels")
    return q, scales


def attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _conv_geometry(low: OnnxLowering, node, x_shape, w_shape) -> tuple[dict, tuple[int, ...], bool]:
    a = attrs(node)
    one_d = len(w_shape) == 3
    kh, kw = (1, w_shape[2]) if one_d else (w_shape[2], w_shape[3])
    strides = list(a.get("strides", [1] * (1 if one_d else 2)))
    dil = list(a.get("dilations", [1]))
    pads = list(a.get("pads", [0] * (2 if one_d else 4)))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if any(d != 1 for d in dil) or auto not in ("NOTSET", "VALID"):
        raise UnsupportedError(f"{low.where(node)}: only dilation 1 and explicit pads are supported "
                               f"(dilations={dil}, auto_pad={auto})")
    if auto == "VALID":
        pads = [0] * len(pads)
    if "kernel_shape" in a and list(a["kernel_shape"]) != ([kw] if one_d else [kh, kw]):
        raise UnsupportedError(f"{low.where(node)}: kernel_shape {list(a['kernel_shape'])} does not match the "
                               f"weight's {[kw] if one_d else [kh, kw]}")
    if one_d:
        strides, pads = [1, strides[0]], [0, pads[0], 0, pads[1]]
    sh, sw = strides
    t, l, b, r = pads
    _, _, h, w = x_shape
    oh, ow = (h + t + b - kh) // sh + 1, (w + l + r - kw) // sw + 1
    geo = {"stride": (sh, sw), "padding": (t, l, b, r), "groups": int(a.get("group", 1))}
    return geo, (1, w_shape[0], oh, ow), one_d


def _weight(low: OnnxLowering, name: str, node, axis: int = 0):
    """(float weight, int8 weight or None, scales or None) of a float or DequantizeLinear'd initializer."""
    if name in low.const_dq:
        q, scale, zp, qaxis = low.const_dq[name]
        if np.asarray(scale).size > 1 and qaxis % q.ndim != axis:
            raise UnsupportedError(f"{low.where(node)}: weights quantized along axis {qaxis}; only per output "
                                   "channel is supported")
        wq, scales = weight_int8(q, scale, zp, axis, low.where(node))
        shape = [1] * q.ndim
        shape[axis] = -1
        return wq.astype(np.float64) * scales.reshape(shape), wq, scales
    return low.const(name, node, "weight").astype(np.float64), None, None


def _bias(low: OnnxLowering, name: str | None, node, out: int, x_key: str, scales) -> tuple[np.ndarray, Any]:
    """(float bias, int32 bias in s_x*s_w units or None)."""
    if not name:
        return np.zeros(out), (np.zeros(out, np.int32) if scales is not None else None)
    if name in low.const_dq:
        q, scale, _, _ = low.const_dq[name]
        real = q.astype(np.float64) * np.asarray(scale, np.float64)
        if scales is not None and x_key in low.given:
            want = low.given[x_key][0] * scales
            if np.allclose(np.asarray(scale, np.float64) * np.ones(out), want, rtol=1e-6, atol=0):
                return real, q.astype(np.int32)
        return real, None
    return low.const(name, node, "bias").astype(np.float64), None


def _conv(low: OnnxLowering, node) -> None:
    x = low.value(node.input[0], node)
    w, wq, scales = _weight(low, node.input[1], node)
    geo, shape, one_d = _conv_geometry(low, node, low.shapes[x], w.shape)
    if one_d:
        w, wq = w[:, :, None, :], (wq[:, :, None, :] if wq is not None else None)
    b, bq = _bias(low, node.input[2] if len(node.input) > 2 else None, node, w.shape[0], x, scales)
    low.emit(FloatOp(low.layer_name(node), "conv", [x], node.output[0], w, b, geo, wq=wq, w_scales=scales, bq=bq),
             shape)


def _linear_op(low: OnnxLowering, node, x: str, w, wq, scales, b, bq, out: str) -> None:
    if len(low.shapes[x]) != 2:
        raise UnsupportedError(f"{low.where(node)}: input must be [N, features] (flatten first), is "
                               f"{list(low.shapes[x])}")
    low.emit(FloatOp(low.layer_name(node), "linear", [x], out, w, b, wq=wq, w_scales=scales, bq=bq),
             (1, w.shape[0]))


def _gemm(low: OnnxLowering, node) -> None:
    a = attrs(node)
    if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
        raise UnsupportedError(f"{low.where(node)}: only Gemm with transA=0, alpha=beta=1 is supported")
    x = low.value(node.input[0], node)
    trans_b = a.get("transB", 0)
    w, wq, scales = _weight(low, node.input[1], node, axis=0 if trans_b else 1)
    if not trans_b:
        w, wq = w.T, (wq.T if wq is not None else None)
    b, bq = _bias(low, node.input[2] if len(node.input) > 2 else None, node, w.shape[0], x, scales)
    _linear_op(low, node, x, w, wq, scales, b, bq, node.output[0])


def _matmul(low: OnnxLowering, node) -> None:
    x = low.value(node.input[0], node)
    w, wq, scales = _weight(low, node.input[1], node, axis=1)
    w, wq = w.T, (wq.T if wq is not None else None)
    _linear_op(low, node, x, w, wq, scales, np.zeros(w.shape[0]), None if wq is None else np.zeros(w.shape[0],
                                                                                                  np.int32),
               node.output[0])


def _add(low: OnnxLowering, node) -> None:
    if any(i in low.init or i in low.const_dq for i in node.input):
        op = low.fold_target(node)  # MatMul + Add(bias): a linear layer's bias
        other = next(i for i in node.input if i in low.init)
        if op.kind != "linear" or op.wq is not None:
            raise UnsupportedError(f"{low.where(node)}: adding a constant is only supported as the bias of a float "
                                   "MatMul")
        op.bias = op.bias + low.init[other].astype(np.float64).reshape(-1)
        _retarget(low, op, node.output[0])
        return
    a, b = low.value(node.input[0], node), low.value(node.input[1], node)
    if low.shapes[a] != low.shapes[b]:
        raise UnsupportedError(f"{low.where(node)}: operand shapes differ ({list(low.shapes[a])} vs "
                               f"{list(low.shapes[b])}); broadcasting is not supported")
    low.emit(FloatOp(low.layer_name(node), "add", [a, b], node.output[0]), low.shapes[a])
    if a in low.flat_of:
        low.flat_of[node.output[0]] = low.flat_of[a]


def _retarget(low: OnnxLowering, op: FloatOp, out: str) -> None:
    del low.producer[op.output]
    shape = low.shapes[op.output]
    op.output = out
    low.producer[out] = op
    low.alias[out] = out
    low.shapes[out] = shape


def _activation(lo: float, hi: float):
    def rule(low: OnnxLowering, node) -> None:
        op = low.fold_target(node)
        if op.kind not in ("conv", "linear", "add"):
            raise UnsupportedError(f"{low.where(node)} follows a {op.kind}; activations fold only into conv, "
                                   "linear or add")
        op.clamp = (max(op.clamp[0], lo), min(op.clamp[1], hi))
        _retarget(low, op, node.output[0])
    return rule


def _clip(low: OnnxLowering, node) -> None:
    a = attrs(node)
    lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
    if len(node.input) > 1 and node.input[1]:
        lo = float(low.const(node.input[1], node, "min"))
    if len(node.input) > 2 and node.input[2]:
        hi = float(low.const(node.input[2], node, "max"))
    _activation(lo, hi)(low, node)


def _batch_norm(low: OnnxLowering, node) -> None:
    op = low.fold_target(node)
    if op.kind != "conv" or op.clamp != (-np.inf, np.inf) or op.wq is not None:
        raise UnsupportedError(f"{low.where(node)} must directly follow a float Conv")
    gamma, beta, mean, var = (low.const(n, node, "batch norm operand").astype(np.float64) for n in node.input[1:5])
    op.weight, op.bias = fold_bn_arrays(op.weight, op.bias, mean, var, gamma, beta, float(attrs(node).get(
        "epsilon", 1e-5)))
    _retarget(low, op, node.output[0])


def _pool(low: OnnxLowering, node) -> None:
    x = low.value(node.input[0], node)
    if node.op_type == "ReduceMean":
        a = attrs(node)
        axes = a.get("axes") or (list(low.const(node.input[1], node, "axes")) if len(node.input) > 1 else [])
        rank = 3 if low.shapes[x][2] == 1 and low.rank == 3 else 4
        if sorted(int(d) % rank for d in axes) != ([2, 3] if rank == 4 else [2]):
            raise UnsupportedError(f"{low.where(node)}: only a mean over the spatial axes is supported, got {axes}")
        if not a.get("keepdims", 1):
            c = low.shapes[x][1]
            low.emit(FloatOp(low.layer_name(node), "pool", [x], node.output[0], attrs={"keepdim": False}), (1, c))
            return
    c = low.shapes[x][1]
    low.emit(FloatOp(low.layer_name(node), "pool", [x], node.output[0]), (1, c, 1, 1))


def _reshape(low: OnnxLowering, node) -> None:
    x = low.value(node.input[0], node)
    src = low.shapes[x]
    if node.op_type == "Flatten":
        ok = attrs(node).get("axis", 1) == 1
    else:
        target = [int(v) for v in low.const(node.input[1], node, "shape")]
        ok = len(target) == 2 and target[0] in (1, -1, 0) and target[1] in (-1, int(np.prod(src[1:])))
    if not ok:
        raise UnsupportedError(f"{low.where(node)}: only flattening to [N, -1] is supported")
    if len(src) == 2:
        low.alias[node.output[0]] = x
        return
    dst = (1, int(np.prod(src[1:])))
    low.emit(FloatOp(low.layer_name(node), "reshape", [x], node.output[0], attrs={"shape": dst}), dst)
    if x in low.given:
        low.set_given(node.output[0], low.given[x], node)
    if src[2] * src[3] > 1:
        low.flat_of[node.output[0]] = (src[1], src[2], src[3])


def _passthrough(low: OnnxLowering, node) -> None:
    low.alias[node.output[0]] = low.value(node.input[0], node)


def _quantize_linear(low: OnnxLowering, node) -> None:
    key = low.value(node.input[0], node)
    low.set_given(key, low.qparams(node.input[1], node.input[2] if len(node.input) > 2 else None, node,
                                   "activation"), node)
    low.alias[node.output[0]] = key


def _dequantize_linear(low: OnnxLowering, node) -> None:
    src = node.input[0]
    if src in low.init:  # a weight or a bias: read by the op that uses it
        zp = low.init.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        q, scale, axis = low.init[src], low.const(node.input[1], node, "scale"), int(attrs(node).get("axis", 1))
        if (q.dtype not in (np.int8, np.uint8, np.int32) or scale.dtype.kind != "f" or (zp is not None and
                                                                                      zp.dtype != q.dtype)):
            raise UnsupportedError(f"{low.where(node)}: dequantizes {q.dtype} values with a {scale.dtype} scale"
                                   f"{f' and a {zp.dtype} zero point' if zp is not None else ''}; it takes int8, "
                                   "uint8 or int32 values, a float scale and a zero point of the values' type")
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise UnsupportedError(f"{low.where(node)}: scales must be finite and > 0, got {scale.ravel()[:4]}")
        if scale.size > 1:  # per axis: one scale (and zero point) per index along a real axis
            sizes = {q.shape[axis] if -q.ndim <= axis < q.ndim else -1, zp.size if zp is not None else scale.size}
            if sizes != {scale.size}:
                raise UnsupportedError(f"{low.where(node)}: {scale.size} scales along axis {axis} of a "
                                       f"{list(q.shape)} tensor")
            axis %= q.ndim
        low.const_dq[node.output[0]] = (q, scale, zp, axis)
        return
    key = low.value(src, node)
    low.set_given(key, low.qparams(node.input[1], node.input[2] if len(node.input) > 2 else None, node,
                                   "activation"), node)
    low.alias[node.output[0]] = key


from microtrain.frontend.onnx_qoperator import QOPERATOR_RULES  # noqa: E402  (uses the helpers above)
from microtrain.frontend.onnx_window import WINDOW_RULES  # noqa: E402  (uses the helpers above)

ONNX_RULES = {
    "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul, "Add": _add, "BatchNormalization": _batch_norm,
    "Relu": _activation(0.0, np.inf), "Clip": _clip,
    "GlobalAveragePool": _pool, "ReduceMean": _pool, "Flatten": _reshape, "Reshape": _reshape,
    "Identity": _passthrough, "Dropout": _passthrough,
    "QuantizeLinear": _quantize_linear, "DequantizeLinear": _dequantize_linear,
    **QOPERATOR_RULES, **WINDOW_RULES,
}


def _input(low: OnnxLowering, vi) -> None:
    dims = vi.type.tensor_type.shape.dim
    shape = []
    for i, d in enumerate(dims):
        if d.HasField("dim_value") and d.dim_value > 0:
            shape.append(int(d.dim_value))
        elif i == 0:
            shape.append(1)  # a symbolic batch dimension: microtrain runs batch 1
        else:
            raise UnsupportedError(f"ONNX input {vi.name!r} has a dynamic dimension {i} "
                                   f"({d.dim_param or '?'!r}); re-export the model with a fixed input shape")
    if shape[0] != 1 or len(shape) not in (2, 3, 4):
        raise UnsupportedError(f"ONNX input {vi.name!r} has shape {shape}; expected [1, C, H, W], [1, C, L] or "
                               "[1, F]")
    low.rank = len(shape)
    low.input = vi.name
    low.alias[vi.name] = vi.name
    low.shapes[vi.name] = (1, shape[1], 1, shape[2]) if len(shape) == 3 else tuple(shape)


def lower_onnx(model) -> FloatPlan:
    low = OnnxLowering(model)
    inputs = [vi for vi in model.graph.input if vi.name not in low.init]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise UnsupportedError(f"the ONNX model has {len(inputs)} inputs and {len(model.graph.output)} outputs; "
                               "one image (or signal) input and one logits output are supported")
    _input(low, inputs[0])
    for node in model.graph.node:
        if node.op_type == "Constant":
            from onnx import numpy_helper

            low.init[node.output[0]] = numpy_helper.to_array(attrs(node)["value"])
            continue
        rule = ONNX_RULES.get(node.op_type)
        if rule is None or node.domain not in ("", "ai.onnx", "com.microsoft"):
            raise UnsupportedError(f"unsupported ONNX op {node.op_type} ({node.domain or 'ai.onnx'}) at node "
                                   f"{node.name or node.output[0]!r} (supported: {', '.join(sorted(ONNX_RULES))})")
        rule(low, node)
    out = model.graph.output[0].name
    low.output = low.alias.get(out, "")
    if low.output not in low.producer:
        raise UnsupportedError(f"ONNX output {out!r} is not computed by a supported op")
    if len(low.shapes[low.output]) != 2:
        raise UnsupportedError(f"the model must return [N, classes] logits, returns {list(low.shapes[low.output])}")
    return FloatPlan(low.input, low.output, low.ops, low.shapes, low.flat_of, low.given, low.rank)


def load_onnx_plan(path: str | Path) -> tuple[FloatPlan, str]:
    """(FloatPlan, 'onnx' | 'onnx-qdq' | 'onnx-qoperator') of an .onnx file, read by
    ``onnx_file.read_onnx`` (external data only from the model's folder; refused if onnx's
    checker finds it invalid)."""
    from microtrain.frontend.onnx_file import read_onnx

    model = read_onnx(path)
    ops = {n.op_type for n in model.graph.node}
    plan = lower_onnx(model)
    qoperator = any(op.startswith(("QLinear", "QGemm")) for op in ops)
    kind = "onnx-qoperator" if qoperator else ("onnx-qdq" if "QuantizeLinear" in ops else "onnx")
    return plan, kind
