"""ONNX rules of the window and copy ops: MaxPool, AveragePool, Pad, Concat (float and QDQ) and
onnxruntime's QOperator forms (MaxPool and Pad on int8 tensors, QLinearAveragePool,
QLinearConcat), onto the FloatPlan kinds maxpool, avgpool, pad and concat (the IR's MAX_POOL2D,
AVG_POOL2D, PAD, CONCAT: TFLite Micro's kernels, which move or pick int8 values and keep their
input's quantization).

* MaxPool / AveragePool: explicit symmetric pads (or auto_pad VALID), no dilation, no ceil_mode,
  no Indices output; AveragePool's count_include_pad keeps ONNX's meaning (default 0: the
  divisor counts only pixels inside the image, as TFLite Micro does). 1-D pools (on [N, C, L])
  are 2-D pools of height 1.
* Pad: mode constant, zero (a float model's 0, an int8 tensor's zero point: real 0), on H and W
  (or L) only, non-negative; the pads input or (opset < 11) attribute.
* Concat: along a non-batch axis of computed tensors (not of flattened ones). Its inputs share
  one quantization in the int8 IR; where a QDQ/QOperator model quantizes them differently, each
  is requantized once to the concatenation's own grid by the op that computes it
  (``ptq.shared_quantization``), the one rounding TFLite's converter also makes.
* QLinearAveragePool: only with the output's scale and zero point equal to the input's (the
  int8 pool has no requantization).

A window op on a value whose quantization the model fixed passes it on (QOperator's int8
MaxPool/Pad; QDQ's QuantizeLinear after the op then checks it is the same).
"""

from __future__ import annotations

from microtrain.frontend import onnx_import as oi
from microtrain.frontend.float_plan import FloatOp, UnsupportedError


def _signal(low: oi.OnnxLowering, key: str) -> bool:
    """A value of a 1-D model ([N, C, L], held as [N, C, 1, L])."""
    return low.rank == 3 and low.shapes[key][2] == 1


def _emit(low: oi.OnnxLowering, node, op: FloatOp, shape, inherit: bool = True) -> None:
    low.emit(op, tuple(int(v) for v in shape))
    src = op.inputs[0]
    if inherit and src in low.given and all(low.given.get(k) == low.given[src] for k in op.inputs):
        low.set_given(op.output, low.given[src], node)


def _window(kind: str):
    def rule(low: oi.OnnxLowering, node, x: str | None = None) -> None:
        x = x or low.value(node.input[0], node)
        a = oi.attrs(node)
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedError(f"{low.where(node)}: the Indices output is not supported")
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1])) or auto not in ("NOTSET", "VALID"):
            raise UnsupportedError(f"{low.where(node)}: only ceil_mode=0, dilation 1 and explicit pads are supported "
                                   f"(ceil_mode={a.get('ceil_mode', 0)}, dilations={a.get('dilations', [1])}, "
                                   f"auto_pad={auto})")
        kernel = [int(v) for v in a["kernel_shape"]]
        strides = [int(v) for v in a.get("strides", [1] * len(kernel))]
        pads = [0] * 2 * len(kernel) if auto == "VALID" else [int(v) for v in a.get("pads", [0] * 2 * len(kernel))]
        if len(kernel) == 1:
            kernel, strides, pads = [1, kernel[0]], [1, strides[0]], [0, pads[0], 0, pads[1]]
        if len(kernel) != 2 or len(low.shapes[x]) != 4:
            raise UnsupportedError(f"{low.where(node)}: only 1-D and 2-D pooling of NCL / NCHW tensors is supported")
        top, left, bottom, right = pads
        if (top, left) != (bottom, right):
            raise UnsupportedError(f"{low.where(node)}: asymmetric pads {pads} are not supported; pad explicitly "
                                   "with a Pad first")
        attrs = {"filter": tuple(kernel), "stride": tuple(strides), "padding": (top, left)}
        if kind == "avgpool":
            attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        n, c, h, w = low.shapes[x]
        oh, ow = (h + 2 * top - kernel[0]) // strides[0] + 1, (w + 2 * left - kernel[1]) // strides[1] + 1
        _emit(low, node, FloatOp(low.layer_name(node), kind, [x], node.output[0], attrs=attrs), (n, c, oh, ow))
    return rule


def _pad(low: oi.OnnxLowering, node) -> None:
    x = low.value(node.input[0], node)
    a = oi.attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = a.get("pads") if "pads" in a else low.const(node.input[1], node, "pads").reshape(-1).tolist()
    pads = [int(v) for v in pads]
    value = 0.0
    if len(node.input) > 2 and node.input[2]:
        v = low.const(node.input[2], node, "constant value").reshape(-1)
        if v.dtype.kind in "iu" and x in low.given:  # an int8 tensor: the pad code; real 0 is its zero point
            value = float(oi.int8_zero_point(v, low.where(node), "pad value") - low.given[x][1])
        else:
            value = float(v[0])
    if len(node.input) > 3 and node.input[3]:
        raise UnsupportedError(f"{low.where(node)}: the axes input is not supported; give pads for every axis")
    rank = 3 if _signal(low, x) else len(low.shapes[x])
    if mode != "constant" or value != 0.0:
        raise UnsupportedError(f"{low.where(node)}: only zero padding is supported (mode constant, value 0 / the "
                               f"zero point), got mode={mode!r}, value={value}")
    if rank not in (3, 4) or len(pads) != 2 * rank or min(pads) < 0 or any(pads[d] or pads[rank + d]
                                                                               for d in (0, 1)):
        raise UnsupportedError(f"{low.where(node)}: only non-negative padding of H and W (or L) of an NCHW or NCL "
                               f"tensor is supported, got pads={pads}")
    if rank == 3:
        top, left, bottom, right = 0, pads[2], 0, pads[5]
    else:
        top, left, bottom, right = pads[2], pads[3], pads[6], pads[7]
    n, c, h, w = low.shapes[x]
    _emit(low, node, FloatOp(low.layer_name(node), "pad", [x], node.output[0],
                             attrs={"padding": (top, left, bottom, right)}), (n, c, h + top + bottom, w + left + right))


def _concat(low: oi.OnnxLowering, node, keys: list[str] | None = None, inherit: bool = True) -> None:
    keys = keys or [low.value(i, node) for i in node.input]
    rank = 3 if _signal(low, keys[0]) else len(low.shapes[keys[0]])
    axis = int(oi.attrs(node)["axis"])
    d = axis % rank
    shapes = [list(low.shapes[k]) for k in keys]
    if any(k in low.flat_of for k in keys) or rank not in (2, 3, 4) or d == 0:
        raise UnsupportedError(f"{low.where(node)}: only concatenation of [N, C, H, W], [N, C, L] or [N, F] tensors "
                               f"along a non-batch axis is supported (axis={axis}, shapes {shapes})")
    plan_dim = {4: {1: 1, 2: 2, 3: 3}, 3: {1: 1, 2: 3}, 2: {1: 1}}[rank][d]  # NCL is held as [N, C, 1, L]
    ir_axis = 1 if rank == 2 else {1: 3, 2: 1, 3: 2}[plan_dim]  # the IR's (NHWC) axis
    if any(s[:plan_dim] + s[plan_dim + 1:] != shapes[0][:plan_dim] + shapes[0][plan_dim + 1:] for s in shapes):
        raise UnsupportedError(f"{low.where(node)}: the inputs' shapes {shapes} differ off the axis {axis}")
    shape = list(shapes[0])
    shape[plan_dim] = sum(s[plan_dim] for s in shapes)
    _emit(low, node, FloatOp(low.layer_name(node), "concat", keys, node.output[0],
                             attrs={"dim": plan_dim, "axis": ir_axis}), shape, inherit)


def _qlinear_average_pool(low: oi.OnnxLowering, node) -> None:
    from microtrain.frontend.onnx_qoperator import _input, _output

    if oi.attrs(node).get("channels_last", 0):
        raise UnsupportedError(f"{low.where(node)}: channels_last=1 is not supported")
    x = _input(low, node, 0)
    out = _output(low, node, 3)
    if out != low.given[x]:
        raise UnsupportedError(f"{low.where(node)}: the output is quantized {out}, the input {low.given[x]}; the int8 "
                               "average pool keeps its input's scale and zero point (quantize with QDQ, whose "
                               "AveragePool does)")
    _window("avgpool")(low, node, x)


def _qlinear_concat(low: oi.OnnxLowering, node) -> None:
    from microtrain.frontend.onnx_qoperator import _input, _output

    keys = [_input(low, node, i) for i in range(2, len(node.input), 3)]
    q = _output(low, node, 0)
    _concat(low, node, keys, inherit=False)
    low.set_given(node.output[0], q, node)


WINDOW_RULES = {"MaxPool": _window("maxpool"), "AveragePool": _window("avgpool"), "Pad": _pad, "Concat": _concat,
                "QLinearAveragePool": _qlinear_average_pool, "QLinearConcat": _qlinear_concat}
"""Op type -> rule; ``onnx_import.ONNX_RULES`` includes them (QLinear*: onnxruntime's com.microsoft ops)."""
