"""Importer of int8 .tflite models: the model's own int8 arithmetic, as TFLite Micro runs it.

``import_tflite(path) -> Graph``. The flatbuffer is read by ``tflite_schema`` (the schema
module of the tflite-micro package); nothing in it is executed. Each operator is turned
into IR nodes by one rule of ``IMPORT_RULES`` keyed by its builtin name; the IR op carries
TFLM's rule for it (see ``microtrain/ir/ops.py``), so the reference interpreter, the
simulator and the generated C give TFLM's int8 outputs bit for bit.

Supported: CONV_2D, DEPTHWISE_CONV_2D (any depth multiplier), FULLY_CONNECTED (with or
without bias, 2-D or flattened input), ADD (same shapes), MEAN over height and width,
AVERAGE_POOL_2D, MAX_POOL_2D, PAD / PADV2, RESHAPE (and the SHAPE -> STRIDED_SLICE -> PACK
chain Keras' Flatten makes with a dynamic batch, folded here), CONCATENATION, SOFTMAX,
QUANTIZE (float -> int8) on the graph input and DEQUANTIZE (int8 -> float) on the graph
output; fused NONE / RELU / RELU6 / RELU_N1_TO_1; per-channel or per-tensor weights;
SAME padding with TFLite's split (the odd pixel goes bottom/right), non-square inputs and
kernels. Anything else is a ``TFLiteError`` naming the operator's index, builtin name and
tensor names.

Naming: node ``<kind><op index>`` (``conv0``, ``dwconv1``, ``fc10``), its tensors
``<node>.weight``, ``<node>.bias``, ``<node>.out``; the graph input is ``input``.
``graph.meta["tflite"]`` maps every IR tensor that has a counterpart in the file to
``[tensor index, layout]`` and every node to its operator index, so that ``tflite_export``
can write a trained graph back into the same file. ``meta["scale_dtype"] = "float32"`` says
that every scale is a float32 value (as the file stores it and TFLM computes with it); code
that makes new scales for such a graph (a new head) rounds them to float32.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from microtrain import quant
from microtrain.frontend import tflite_fold
from microtrain.frontend.tflite_schema import (
    OpInfo,
    TensorInfo,
    TFLiteError,
    activation_name,
    operators,
    padding_name,
    read_model,
    tensor_info,
)
from microtrain.ir import Graph, GraphBuilder, IRError, Op, QParams, Tensor, verify_graph

FLOAT_MODEL = ("a float (non-quantized) model; convert it with full-integer quantization (Optimize.DEFAULT, a "
               "representative dataset, TFLITE_BUILTINS_INT8)")
KINDS = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dwconv", "FULLY_CONNECTED": "fc", "ADD": "add", "MEAN": "mean",
         "AVERAGE_POOL_2D": "avgpool", "MAX_POOL_2D": "maxpool", "PAD": "pad", "PADV2": "pad", "RESHAPE": "reshape",
         "CONCATENATION": "concat", "SOFTMAX": "softmax"}
EDGE_OPS = ("QUANTIZE", "DEQUANTIZE")


class _Importer:
    def __init__(self, model, source: str) -> None:
        self.model = model
        self.source = source
        self.b = GraphBuilder()
        self.names: dict[int, str] = {}  # tflite tensor index -> IR activation name
        self.consts: dict[int, np.ndarray] = {}  # folded shape arithmetic (SHAPE, STRIDED_SLICE, PACK)
        self.tensor_map: dict[str, list] = {}  # IR tensor -> [tflite index, layout]
        self.node_map: dict[str, int] = {}
        self.op: OpInfo | None = None
        self._infos: dict[int, TensorInfo] = {}

    # --- errors and tensors ------------------------------------------------------------
    def info(self, index: int) -> TensorInfo:
        if index not in self._infos:
            try:
                self._infos[index] = tensor_info(self.model, index)
            except TFLiteError as e:
                raise self.fail(str(e), by_name=False) from None
            except (IndexError, ValueError) as e:
                raise self.fail(f"tensor {index}: corrupt entry ({e})", by_name=False) from None
        return self._infos[index]

    def fail(self, msg: str, by_name: bool = True) -> TFLiteError:
        """The error of ``msg`` at the current operator, naming its tensors (``by_name=False``: by index
        only, for a tensor entry that cannot be read itself)."""
        if self.op is None:
            return TFLiteError(f"{self.source}: {msg}")
        if not by_name:
            return TFLiteError(f"{self.source}: operator {self.op.index} {self.op.name} (tensors "
                               f"{list(self.op.inputs)} -> {list(self.op.outputs)}): {msg}")
        def names(idx):
            return ", ".join(repr(self.info(i).name) if i >= 0 else "-" for i in idx) if idx else "none"
        try:
            where = f"inputs {names(self.op.inputs)}; outputs {names(self.op.outputs)}"
        except TFLiteError:
            where = f"tensors {list(self.op.inputs)} -> {list(self.op.outputs)}"
        return TFLiteError(f"{self.source}: operator {self.op.index} {self.op.name} ({where}): {msg}")

    def expect(self, cond: bool, msg: str) -> None:
        if not cond:
            raise self.fail(msg)

    def activation(self, index: int, role: str = "input") -> TensorInfo:
        """An int8 activation with per-tensor quantization, or a precise error saying what it is instead."""
        t = self.info(index)
        if t.dtype == "int16":
            raise self.fail(f"{role} {t.name!r} is int16: int16 activations (16x8 quantization) are not supported; "
                            "convert with int8 activations (TFLITE_BUILTINS_INT8)")
        if t.dtype == "float32":
            raise self.fail(f"{role} {t.name!r} is float32: {FLOAT_MODEL}")
        self.expect(t.dtype == "int8", f"{role} {t.name!r} is {t.dtype}, only int8 activations are supported")
        self.expect(t.scale is not None and len(t.scale) == 1,
                    f"{role} {t.name!r} needs per-tensor quantization (has {0 if t.scale is None else len(t.scale)} "
                    "scales)")
        self.expect(t.scale[0] > 0 and np.isfinite(t.scale[0]), f"{role} {t.name!r} has scale {t.scale[0]}")
        self.expect(-128 <= t.zero_point[0] <= 127, f"{role} {t.name!r} has zero point {t.zero_point[0]}")
        return t

    def input_name(self, index: int) -> str:
        self.expect(index in self.names, f"input tensor {self.info(index).name!r} is not computed by an earlier "
                                         "operator (a constant or an unsupported producer)")
        self.activation(index)
        return self.names[index]

    def add_output(self, index: int, name: str) -> str:
        t = self.activation(index, "output")
        self.expect(len(t.shape) >= 1 and t.shape[0] == 1, f"output {t.name!r} has shape {list(t.shape)}: only batch 1")
        self.b.add_tensor(Tensor(name, t.shape, "int8", QParams.per_tensor(t.scale[0], t.zero_point[0])))
        self.names[index] = name
        self.tensor_map[name] = [index, "same"]
        return name

    def add_const(self, name: str, data: np.ndarray, quant: QParams | None, index: int | None, layout: str) -> str:
        self.b.add_tensor(Tensor(name, tuple(data.shape), str(data.dtype), quant, np.ascontiguousarray(data)))
        if index is not None:
            self.tensor_map[name] = [index, layout]
        return name

    def add_node(self, name: str, op: Op, inputs, outputs, **attrs) -> None:
        self.b.add_node(name, op, inputs, outputs, **attrs)
        if self.op is not None:
            self.node_map[name] = self.op.index

    def same_quant(self, a: TensorInfo, b: TensorInfo, what: str) -> None:
        self.expect(a.scale == b.scale and a.zero_point == b.zero_point,
                    f"{what}: {b.name!r} (scale {b.scale[0]:.9g}, zero {b.zero_point[0]}) must keep the quantization "
                    f"of {a.name!r} (scale {a.scale[0]:.9g}, zero {a.zero_point[0]}); TFLM does not rescale here")

    def fused(self, options, out: TensorInfo) -> dict:
        act = activation_name(getattr(options, "fusedActivationFunction", 0))
        self.expect(act in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"),
                    f"fused activation {act} is not supported (NONE, RELU, RELU6, RELU_N1_TO_1 are)")
        lo, hi = quant.tflm_activation_range(act, out.scale[0], out.zero_point[0])
        self.expect(lo <= hi, f"fused {act} range [{lo}, {hi}] is empty for output {out.name!r}")
        return {"act_min": lo, "act_max": hi, "activation": act}

    def weight(self, index: int, out_channels: int, axis: int) -> tuple[np.ndarray, QParams, bool]:
        """int8 weight data, its per-channel QParams (axis 0 after transposition) and whether it was per-tensor."""
        w = self.info(index)
        if w.dtype == "float32":
            raise self.fail(f"weight {w.name!r} is float32: {FLOAT_MODEL}")
        self.expect(w.dtype == "int8", f"weight {w.name!r} is {w.dtype}; only int8 weights are supported")
        self.expect(w.data is not None, f"weight {w.name!r} is not a constant")
        self.expect(w.scale is not None, f"weight {w.name!r} has no quantization parameters")
        self.expect(all(z == 0 for z in w.zero_point), f"weight {w.name!r} is not symmetric (zero point != 0)")
        if len(w.scale) == 1:
            scales, per_tensor = w.scale * out_channels, True
        else:
            self.expect(len(w.scale) == out_channels and w.axis == axis,
                        f"weight {w.name!r} has {len(w.scale)} scales along axis {w.axis}; expected 1 or "
                        f"{out_channels} along axis {axis}")
            scales, per_tensor = w.scale, False
        self.expect(all(s > 0 and np.isfinite(s) for s in scales), f"weight {w.name!r} has a non-positive scale")
        return w.data, QParams.per_channel(scales), per_tensor

    def bias(self, inputs: tuple[int, ...], name: str, out_channels: int) -> str:
        if len(inputs) > 2 and inputs[2] >= 0:
            t = self.info(inputs[2])
            self.expect(t.dtype == "int32" and t.data is not None and t.shape == (out_channels,),
                        f"bias {t.name!r} must be a constant int32 [{out_channels}], is {t.dtype}{list(t.shape)}")
            return self.add_const(name, t.data.astype(np.int32), None, inputs[2], "same")
        # no bias in the file: zeros, which the exporter adds to the file only if training changed them
        return self.add_const(name, np.zeros(out_channels, np.int32), None, None, "absent")


def same_padding(in_size: int, out_size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """TFLite's padding (before, after) of one spatial axis; SAME puts the odd pixel after (bottom/right)."""
    total = max((out_size - 1) * stride + kernel - in_size, 0) if padding == "SAME" else 0
    return total // 2, total - total // 2


def _geometry(imp: _Importer, op: OpInfo, x: TensorInfo, y: TensorInfo, kh: int, kw: int) -> dict:
    o = op.options
    sh, sw = int(o.strideH), int(o.strideW)
    imp.expect(sh >= 1 and sw >= 1, f"stride {sh}x{sw}")
    if hasattr(o, "dilationHFactor"):
        imp.expect(int(o.dilationHFactor) == 1 and int(o.dilationWFactor) == 1,
                   f"dilation {o.dilationHFactor}x{o.dilationWFactor} is not supported (only 1)")
    pad = padding_name(o.padding)
    imp.expect(pad in ("SAME", "VALID"), f"padding {pad}")
    imp.expect(len(x.shape) == 4 and len(y.shape) == 4, f"needs 4-D NHWC tensors, has {list(x.shape)} -> "
                                                         f"{list(y.shape)}")
    top, bottom = same_padding(x.shape[1], y.shape[1], kh, sh, pad)
    left, right = same_padding(x.shape[2], y.shape[2], kw, sw, pad)
    oh = (x.shape[1] + top + bottom - kh) // sh + 1
    ow = (x.shape[2] + left + right - kw) // sw + 1
    imp.expect((oh, ow) == y.shape[1:3], f"{pad} {kh}x{kw} stride {sh}x{sw} of {x.shape[1]}x{x.shape[2]} gives "
                                         f"{oh}x{ow}, the output tensor says {y.shape[1]}x{y.shape[2]}")
    return {"stride": (sh, sw), "padding": (top, left, bottom, right)}


def _conv2d(imp: _Importer, op: OpInfo, name: str) -> None:
    x, y = imp.activation(op.inputs[0]), imp.activation(op.outputs[0], "output")
    w_info = imp.info(op.inputs[1])
    imp.expect(len(w_info.shape) == 4, f"weight {w_info.name!r} must be OHWI, has shape {list(w_info.shape)}")
    out_c, kh, kw, per_group = w_info.shape
    w, wq, per_tensor = imp.weight(op.inputs[1], out_c, 0)
    imp.expect(per_group >= 1 and x.shape[3] % per_group == 0 and out_c % (x.shape[3] // per_group) == 0,
               f"weight {w_info.name!r} {list(w.shape)} does not fit {x.shape[3]} input channels")
    geo = _geometry(imp, op, x, y, kh, kw)
    imp.add_const(f"{name}.weight", w, wq, op.inputs[1], "ohwi")
    bias = imp.bias(op.inputs, f"{name}.bias", out_c)
    out = imp.add_output(op.outputs[0], f"{name}.out")
    imp.add_node(name, Op.CONV2D, (imp.input_name(op.inputs[0]), f"{name}.weight", bias), (out,), **geo,
                 groups=x.shape[3] // per_group, **imp.fused(op.options, y), per_tensor_weight=per_tensor)


def _depthwise(imp: _Importer, op: OpInfo, name: str) -> None:
    x, y = imp.activation(op.inputs[0]), imp.activation(op.outputs[0], "output")
    w_info = imp.info(op.inputs[1])
    imp.expect(len(w_info.shape) == 4 and w_info.shape[0] == 1,
               f"depthwise weight {w_info.name!r} must be [1, kh, kw, C*M], is {list(w_info.shape)}")
    _, kh, kw, out_c = w_info.shape
    imp.expect(out_c % x.shape[3] == 0 and y.shape[3] == out_c,
               f"{out_c} output channels are not a multiple of the {x.shape[3]} input channels")
    w, wq, per_tensor = imp.weight(op.inputs[1], out_c, 3)
    geo = _geometry(imp, op, x, y, kh, kw)
    # [1, kh, kw, C*M] -> OHWI [C*M, kh, kw, 1]: output channel c*M + m reads input channel c
    # (groups = C, M outputs per group), exactly TFLM's depthwise indexing.
    imp.add_const(f"{name}.weight", np.ascontiguousarray(w[0].transpose(2, 0, 1)[..., None]), wq, op.inputs[1],
                  "1hwo")
    bias = imp.bias(op.inputs, f"{name}.bias", out_c)
    out = imp.add_output(op.outputs[0], f"{name}.out")
    imp.add_node(name, Op.CONV2D, (imp.input_name(op.inputs[0]), f"{name}.weight", bias), (out,), **geo,
                 groups=x.shape[3], **imp.fused(op.options, y), per_tensor_weight=per_tensor, depth_multiplier=out_c
                 // x.shape[3])


def _fully_connected(imp: _Importer, op: OpInfo, name: str) -> None:
    o = op.options
    imp.expect(int(getattr(o, "weightsFormat", 0)) == 0, "shuffled weights are not supported")
    x, y = imp.activation(op.inputs[0]), imp.activation(op.outputs[0], "output")
    w_info = imp.info(op.inputs[1])
    imp.expect(len(w_info.shape) == 2, f"weight {w_info.name!r} must be [O, C], is {list(w_info.shape)}")
    out_c, in_c = w_info.shape
    w, wq, per_tensor = imp.weight(op.inputs[1], out_c, 0)
    size = int(np.prod(x.shape))
    imp.expect(size == in_c, f"input {x.name!r} {list(x.shape)} holds {size} values; the weight takes {in_c} "
                             "(only batch 1)")
    src = imp.input_name(op.inputs[0])
    if x.shape != (1, in_c):  # TFLM flattens the input itself; the IR says so with a RESHAPE
        xq = QParams.per_tensor(x.scale[0], x.zero_point[0])
        flat = imp.b.add_tensor(Tensor(f"{name}.in", (1, in_c), "int8", xq))
        imp.add_node(f"{name}.flatten", Op.RESHAPE, (src,), (flat,), shape=(1, in_c))
        src = flat
    imp.add_const(f"{name}.weight", w, wq, op.inputs[1], "oc")
    bias = imp.bias(op.inputs, f"{name}.bias", out_c)
    imp.expect(int(np.prod(y.shape)) == out_c, f"output {y.name!r} {list(y.shape)} is not {out_c} values")
    act = imp.fused(o, y)
    if y.shape == (1, out_c):
        out = imp.add_output(op.outputs[0], f"{name}.out")
        imp.add_node(name, Op.FULLY_CONNECTED, (src, f"{name}.weight", bias), (out,), **act,
                     per_tensor_weight=per_tensor)
        return
    flat = imp.b.add_tensor(Tensor(f"{name}.flat", (1, out_c), "int8", QParams.per_tensor(y.scale[0], y.zero_point[0])))
    imp.add_node(name, Op.FULLY_CONNECTED, (src, f"{name}.weight", bias), (flat,), **act, per_tensor_weight=per_tensor)
    out = imp.add_output(op.outputs[0], f"{name}.out")
    imp.add_node(f"{name}.unflatten", Op.RESHAPE, (flat,), (out,), shape=y.shape)


def _add(imp: _Importer, op: OpInfo, name: str) -> None:
    imp.expect(len(op.inputs) == 2, f"{len(op.inputs)} inputs")
    a, b = imp.activation(op.inputs[0]), imp.activation(op.inputs[1])
    y = imp.activation(op.outputs[0], "output")
    imp.expect(a.shape == b.shape == y.shape, f"broadcasting ADD ({list(a.shape)} + {list(b.shape)}) is not supported")
    ins = (imp.input_name(op.inputs[0]), imp.input_name(op.inputs[1]))
    out = imp.add_output(op.outputs[0], f"{name}.out")
    imp.add_node(name, Op.ADD, ins, (out,), **imp.fused(op.options, y))


def _mean(imp: _Importer, op: OpInfo, name: str) -> None:
    x, y = imp.activation(op.inputs[0]), imp.activation(op.outputs[0], "output")
    axes = imp.consts.get(op.inputs[1], imp.info(op.inputs[1]).data)
    imp.expect(axes is not None, "the reduction axes are not a constant")
    imp.expect(len(x.shape) == 4 and sorted(int(a) % 4 for a in np.ravel(axes)) == [1, 2],
               f"only the mean over height and width of a 4-D tensor is supported (axes {np.ravel(axes).tolist()} of "
               f"{list(x.shape)})")
    keep = bool(op.options.keepDims)
    c = x.shape[3]
    imp.expect(y.shape == ((1, 1, 1, c) if keep else (1, c)), f"output shape {list(y.shape)}")
    src = imp.input_name(op.inputs[0])
    if keep:
        out = imp.add_output(op.outputs[0], f"{name}.out")
        imp.add_node(name, Op.GLOBAL_AVG_POOL, (src,), (out,), rule="tflm")
        return
    pooled = imp.b.add_tensor(Tensor(f"{name}.pooled", (1, 1, 1, c), "int8",
                                     QParams.per_tensor(y.scale[0], y.zero_point[0])))
    imp.add_node(name, Op.GLOBAL_AVG_POOL, (src,), (pooled,), rule="tflm")
    out = imp.add_output(op.outputs[0], f"{name}.out")
    imp.add_node(f"{name}.flatten", Op.RESHAPE, (pooled,), (out,), shape=(1, c))


def _pool(op_kind: Op):
    def rule(imp: _Importer, op: OpInfo, name: str) -> None:
        x, y = imp.activation(op.inputs[0]), imp.activation(op.outputs[0], "output")
        imp.same_quant(x, y, "pooling")
        fh, fw = int(op.options.filterHeight), int(op.options.filterWidth)
        imp.expect(fh >= 1 and fw >= 1, f"filter {fh}x{fw}")
        geo = _geometry(imp, op, x, y, fh, fw)
        out = imp.add_output(op.outputs[0], f"{name}.out")
        imp.add_node(name, op_kind, (imp.input_name(op.inputs[0]),), (out,), filter=(fh, fw), **geo,
                     **imp.fused(op.options, y))
    return rule


def _pad(imp: _Importer, op: OpInfo, name: str) -> None:
    x, y = imp.activation(op.inputs[0]), imp.activation(op.outputs[0], "output")
    imp.same_quant(x, y, "PAD")
    pads = imp.consts.get(op.inputs[1], imp.info(op.inputs[1]).data)
    imp.expect(pads is not None and np.shape(pads) == (len(x.shape), 2),
               f"paddings must be a constant [{len(x.shape)}, 2]")
    pads = tuple((int(a), int(b)) for a, b in np.asarray(pads))
    imp.expect(pads[0] == (0, 0) and min(min(p) for p in pads) >= 0, f"paddings {pads}: batch padding or negative")
    value = y.zero_point[0]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        v = imp.info(op.inputs[2])
        imp.expect(v.data is not None and v.dtype == "int8" and v.data.size == 1, "constant_values must be one int8")
        value = int(np.ravel(v.data)[0])
    imp.expect(tuple(d + a + b for d, (a, b) in zip(x.shape, pads, strict=True)) == y.shape,
               f"padding {list(x.shape)} by {pads} does not give {list(y.shape)}")
    out = imp.add_output(op.outputs[0], f"{name}.out")
    imp.add_node(name, Op.PAD, (imp.input_name(op.inputs[0]),), (out,), pads=pads, pad_value=value)


def _reshape(imp: _Importer, op: OpInfo, name: str) -> None:
    x, y = imp.activation(op.inputs[0]), imp.activation(op.outputs[0], "output")
    imp.same_quant(x, y, "RESHAPE")
    imp.expect(int(np.prod(x.shape)) == int(np.prod(y.shape)), f"cannot reshape {list(x.shape)} to {list(y.shape)}")
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        shape = imp.consts.get(op.inputs[1], imp.info(op.inputs[1]).data)
        imp.expect(shape is not None, "the new shape is not a constant (nor folded from SHAPE/STRIDED_SLICE/PACK)")
        want = tflite_fold.resolve_shape(np.ravel(shape), int(np.prod(x.shape)))
        imp.expect(want == y.shape, f"the shape operand {np.ravel(shape).tolist()} gives {list(want)}, the output "
                                    f"tensor says {list(y.shape)}")
    out = imp.add_output(op.outputs[0], f"{name}.out")
    imp.add_node(name, Op.RESHAPE, (imp.input_name(op.inputs[0]),), (out,), shape=y.shape)


def _concat(imp: _Importer, op: OpInfo, name: str) -> None:
    y = imp.activation(op.outputs[0], "output")
    axis = int(op.options.axis)
    axis = axis + len(y.shape) if axis < 0 else axis
    imp.expect(activation_name(op.options.fusedActivationFunction) == "NONE", "a fused activation on CONCATENATION")
    ins = []
    for i in op.inputs:
        x = imp.activation(i)
        imp.same_quant(x, y, "CONCATENATION")
        imp.expect(len(x.shape) == len(y.shape) and all(x.shape[d] == y.shape[d] for d in range(len(y.shape))
                                                        if d != axis), f"input {x.name!r} {list(x.shape)}")
        ins.append(imp.input_name(i))
    imp.expect(sum(imp.info(i).shape[axis] for i in op.inputs) == y.shape[axis], "concatenated sizes")
    out = imp.add_output(op.outputs[0], f"{name}.out")
    imp.add_node(name, Op.CONCAT, tuple(ins), (out,), axis=axis)


def _softmax(imp: _Importer, op: OpInfo, name: str) -> None:
    x, y = imp.activation(op.inputs[0]), imp.activation(op.outputs[0], "output")
    imp.expect(x.shape == y.shape and int(np.prod(x.shape[:-1])) == 1, f"softmax over {list(x.shape)} (batch 1 only)")
    imp.expect(y.scale[0] == 1.0 / 256 and y.zero_point[0] == -128,
               f"int8 SOFTMAX output must have scale 1/256 and zero point -128 (TFLM), has {y.scale[0]:.9g}, "
               f"{y.zero_point[0]}")
    out = imp.add_output(op.outputs[0], f"{name}.out")
    imp.add_node(name, Op.SOFTMAX, (imp.input_name(op.inputs[0]),), (out,), beta=float(np.float32(op.options.beta)))


IMPORT_RULES = {
    "CONV_2D": _conv2d,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _add,
    "MEAN": _mean,
    "AVERAGE_POOL_2D": _pool(Op.AVG_POOL2D),
    "MAX_POOL_2D": _pool(Op.MAX_POOL2D),
    "PAD": _pad,
    "PADV2": _pad,
    "RESHAPE": _reshape,
    "CONCATENATION": _concat,
    "SOFTMAX": _softmax,
}
SUPPORTED = tuple(IMPORT_RULES) + tflite_fold.FOLDED + EDGE_OPS


def import_tflite(path: str | Path) -> Graph:
    """``.tflite`` file -> verified int8 Graph (see module doc); ``TFLiteError`` on anything it cannot express."""
    path = Path(path)
    model = read_model(path)
    data = path.read_bytes()
    imp = _Importer(model, str(path))
    sg = model.subgraphs[0]
    ins = [int(i) for i in (sg.inputs if sg.inputs is not None else ())]
    outs = [int(i) for i in (sg.outputs if sg.outputs is not None else ())]
    if len(ins) != 1:
        raise imp.fail(f"has {len(ins)} inputs ({', '.join(repr(imp.info(i).name) for i in ins)}); only "
                       "single-input models are supported")
    if len(outs) != 1:
        raise imp.fail(f"has {len(outs)} outputs ({', '.join(repr(imp.info(i).name) for i in outs)}); only "
                       "single-output models are supported")
    ops = operators(model)
    edges = {"input": {"float": False}, "output": {"float": False}}
    x = imp.info(ins[0])
    if x.dtype == "float32" and ops and ops[0].name == "QUANTIZE" and ops[0].inputs[0] == ins[0]:
        imp.op = ops[0]
        q = imp.activation(ops[0].outputs[0], "output")
        edges["input"] = {"float": True, "scale": q.scale[0], "zero_point": q.zero_point[0]}
        ins, ops = [ops[0].outputs[0]], ops[1:]
    imp.op = ops[0] if ops else None
    x = imp.activation(ins[0], "graph input")
    imp.op = None
    imp.b.add_input(Tensor("input", x.shape, "int8", QParams.per_tensor(x.scale[0], x.zero_point[0])))
    imp.names[ins[0]] = "input"
    imp.tensor_map["input"] = [ins[0], "same"]
    out_index = outs[0]
    for op in ops:
        imp.op = op
        if op.name == "DEQUANTIZE" and op.outputs[0] == out_index and op is ops[-1]:
            q = imp.activation(op.inputs[0])
            edges["output"] = {"float": True, "scale": q.scale[0], "zero_point": q.zero_point[0]}
            out_index = op.inputs[0]
            continue
        if op.name in tflite_fold.FOLDED:
            tflite_fold.fold(imp, op)
            continue
        rule = IMPORT_RULES.get(op.name)
        if rule is None:
            where = "here" if op.name not in EDGE_OPS else "inside the graph (only on the float input / output)"
            raise imp.fail(f"{op.name} is not supported {where}; supported: {', '.join(SUPPORTED)}")
        rule(imp, op, f"{KINDS[op.name]}{op.index}")
    imp.op = None
    if out_index not in imp.names:
        raise imp.fail(f"the graph output {imp.info(out_index).name!r} is not computed by a supported operator")
    meta = {"source": str(path), "model": path.stem, "format": "tflite", "scale_dtype": "float32",
            "tflite": {"path": str(path.resolve()), "sha256": hashlib.sha256(data).hexdigest(),
                       "tensors": imp.tensor_map, "nodes": imp.node_map, "edges": edges}}
    if len(x.shape) == 4:
        meta["preprocess"] = {"resolution": [x.shape[1], x.shape[2]], "channels": x.shape[3], "range": [0.0, 1.0]}
        if edges["input"]["float"]:
            meta["preprocess"]["quantize"] = "tflm"
    graph = imp.b.build([imp.names[out_index]], meta)
    try:
        return verify_graph(graph)
    except IRError as e:
        raise TFLiteError(f"{path}: the imported graph is invalid: {e}") from None
