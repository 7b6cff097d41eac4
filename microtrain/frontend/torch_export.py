"""Import ATen graphs: ``torch.export`` programs, ``.pt2`` files and PT2E-quantized models.

Three ways in, one lowering (``lower_exported``) to the same FloatPlan as torch.fx:

* ``capture(module, shape)``: torch.export of a module torch.fx could not trace (Python
  control flow on shapes or constants is specialised at the example shape; control flow on
  tensor *values* cannot be captured by either and is reported).
* ``load_pt2(path)`` (``pt2_file.py``): a program saved with ``torch.export.save``, no
  Python source needed, read so that nothing in the file can run code.
* A PT2E-quantized model (``prepare_pt2e``/``convert_pt2e``, after PTQ or QAT, then
  ``torch.export.export`` + ``save``): its ``quantized_decomposed`` quantize/dequantize
  nodes give each value's scale and zero point and each weight's int8 values and scales,
  which are kept (``FloatPlan.given``, ``FloatOp.wq``) where they fit the int8 spec:
  per-tensor activations, symmetric weights (zero point 0) in [-127, 127], per output
  channel or per tensor; otherwise an ``UnsupportedError`` says which tensor and why.

Rules are keyed by ATen op (``ATEN_RULES``); the shared ones live in ``lowering.py``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.fx

from microtrain.frontend import lowering as lw
from microtrain.frontend.float_plan import FloatOp, FloatPlan, UnsupportedError
from microtrain.frontend.lowering import Lowering, where

aten = torch.ops.aten


def capture(module: torch.nn.Module, example_input_shape: Sequence[int], fx_error: Exception | None = None):
    """torch.export of an eval-mode module at batch 1 (non-strict: the module's Python runs)."""
    shape = (1,) + tuple(int(d) for d in example_input_shape[1:])
    try:
        return torch.export.export(module, (torch.zeros(shape),), strict=False)
    except Exception as e:  # torch raises UserError, GuardOnDataDependentSymNode, ... on value-dependent flow
        first = " ".join(str(e).split())[:300]
        before = f"{fx_error}; " if fx_error is not None else ""
        raise UnsupportedError(f"{before}torch.export cannot capture {type(module).__name__} either ({first}); "
                               "control flow on tensor values must be removed (or written with torch.cond)") from e


# --- constants and weights -------------------------------------------------------------------

class AtenLowering(Lowering):
    """A Lowering of an ExportedProgram's graph: parameters and buffers are placeholders."""

    def __init__(self, ep) -> None:
        super().__init__(ep.graph, {}, supported_summary)
        sig = ep.graph_signature
        fqn = {**sig.inputs_to_parameters, **sig.inputs_to_buffers, **sig.inputs_to_lifted_tensor_constants}
        self.consts: dict[str, torch.Tensor] = {}
        for name, key in fqn.items():
            self.consts[name] = ep.state_dict[key] if key in ep.state_dict else ep.constants[key]
        self.user_inputs = list(sig.user_inputs)
        weighted = [lw.scope(n) for n in ep.graph.nodes if n.op == "call_function" and n.target in WEIGHTED]
        self.weighted_scopes = weighted

    def const(self, a: Any, node: torch.fx.Node, what: str) -> torch.Tensor:
        if isinstance(a, torch.fx.Node) and a.name in self.consts:
            return self.consts[a.name].detach()
        raise UnsupportedError(f"{lw.describe(node, {})} at {where(node)}: the {what} must be a constant "
                               f"parameter, is {getattr(a, 'name', a)!r}")

    def number(self, a: Any, node: torch.fx.Node, what: str) -> float:
        return float(self.const(a, node, what).item()) if isinstance(a, torch.fx.Node) else float(a)

    def layer_name(self, node: torch.fx.Node) -> str:
        """The module path of a conv/linear, widened to the innermost enclosing module holding
        only this one weighted layer (as ``torch_fx.layer_name``)."""
        name = lw.scope(node) or node.name
        while "." in name:
            parent = name.rsplit(".", 1)[0]
            if sum(1 for s in self.weighted_scopes if s == parent or s.startswith(parent + ".")) != 1:
                break
            name = parent
        return name

    def weight(self, a: Any, node: torch.fx.Node) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(float64 weight, int8 weight or None, per-output-channel scales or None)."""
        if isinstance(a, torch.fx.Node) and a.target in DEQUANTIZE_WEIGHT:
            return self._dequantized_weight(a, node)
        return self.const(a, node, "weight").double().numpy(), None, None

    def _dequantized_weight(self, dq: torch.fx.Node, node: torch.fx.Node):
        k = aten_args(dq)
        q = self.const(dq.args[0], node, "quantized weight")
        what = f"weight of {lw.describe(node, {})} at {where(node)}"
        if q.dtype != torch.int8 or k["quant_min"] < -127 or k["quant_max"] > 127:
            raise UnsupportedError(f"{what} is {q.dtype} in [{k['quant_min']}, {k['quant_max']}]; the int8 spec "
                                   "needs symmetric int8 weights in [-127, 127] (quant_min=-127)")
        if dq.target is DQ_PER_CHANNEL:
            if k["axis"] != 0:
                raise UnsupportedError(f"{what} is quantized along axis {k['axis']}; only per output channel "
                                       "(axis 0) is supported")
            scales = self.const(k["scales"], node, "weight scales").double().numpy()
            zeros = self.const(k["zero_points"], node, "weight zero points").numpy()
        else:
            scales = np.full(q.shape[0], self.number(k["scale"], node, "weight scale"))
            zeros = np.full(q.shape[0], self.number(k["zero_point"], node, "weight zero point"))
        if np.any(zeros != 0):
            raise UnsupportedError(f"{what} is asymmetric (zero points {sorted(set(zeros.tolist()))[:4]}); the int8 "
                                   "spec needs symmetric weights (zero point 0)")
        wq = q.numpy().astype(np.int8)
        return wq * scales.reshape((-1,) + (1,) * (wq.ndim - 1)), wq, scales


def aten_args(node: torch.fx.Node) -> dict[str, Any]:
    """The node's arguments by schema name, defaults filled in."""
    out = {}
    for i, a in enumerate(node.target._schema.arguments):
        if i < len(node.args):
            out[a.name] = node.args[i]
        elif a.name in node.kwargs:
            out[a.name] = node.kwargs[a.name]
        else:
            out[a.name] = a.default_value if a.has_default_value() else None
    return out


# --- rules --------------------------------------------------------------------------------

def _conv(low: AtenLowering, node: torch.fx.Node) -> None:
    k = aten_args(node)
    if node.target is aten.convolution.default and (k["transposed"] or any(k["output_padding"])):
        raise UnsupportedError(f"transposed convolution at {where(node)} is not supported")
    w, wq, scales = low.weight(k["weight"], node)
    one_d = w.ndim == 3
    if any(d != 1 for d in k["dilation"]):
        raise UnsupportedError(f"convolution at {where(node)}: only dilation 1 is supported, has {k['dilation']}")
    stride = list(k["stride"]) * (1 if len(k["stride"]) > 1 or one_d else 2)
    padding = k["padding"]
    if one_d:  # [O, I, k] -> [O, I, 1, k]: a conv2d of height 1
        w, wq = w[:, :, None, :], (wq[:, :, None, :] if wq is not None else None)
        stride = [1, stride[0]]
        padding = padding if isinstance(padding, str) else [0, padding[0]]
    elif not isinstance(padding, str) and len(padding) == 1:
        padding = [padding[0], padding[0]]
    b = low.const(k["bias"], node, "bias").double().numpy() if k["bias"] is not None else np.zeros(w.shape[0])
    pad = lw.conv_padding(where(node), padding, (w.shape[2], w.shape[3]))
    op = FloatOp(low.layer_name(node), "conv", [low.value(k["input"], node)], node.name, w, b,
                 {"stride": tuple(stride), "padding": pad, "groups": int(k["groups"])}, wq=wq, w_scales=scales)
    low.emit(op, node)


def _linear(low: AtenLowering, node: torch.fx.Node) -> None:
    k = aten_args(node)
    x = low.value(k["input"], node)
    if len(low.shapes[x]) != 2:
        raise UnsupportedError(f"linear at {where(node)}: input must be [N, features] (flatten first), is "
                               f"{list(low.shapes[x])}")
    w, wq, scales = low.weight(k["weight"], node)
    b = low.const(k["bias"], node, "bias").double().numpy() if k["bias"] is not None else np.zeros(w.shape[0])
    low.emit(FloatOp(low.layer_name(node), "linear", [x], node.name, w, b, wq=wq, w_scales=scales), node)


def _batch_norm(low: AtenLowering, node: torch.fx.Node) -> None:
    k = aten_args(node)
    if k.get("training"):
        raise UnsupportedError(f"batch norm at {where(node)} runs in training mode; export the model in eval()")
    op = _affine_target(low, node, "batch norm")
    arrays = [low.const(k[n], node, n).double().numpy() if k[n] is not None else None
              for n in ("running_mean", "running_var", "weight", "bias")]
    mean, var, gamma, beta = arrays
    gamma = np.ones_like(mean) if gamma is None else gamma
    scale = gamma / np.sqrt(var + float(k["eps"]))
    _fold_affine(op, scale, (np.zeros_like(mean) if beta is None else beta) - scale * mean)
    low.retarget(op, node)


def _affine_target(low: AtenLowering, node: torch.fx.Node, what: str) -> FloatOp:
    """The conv that a per-channel affine map (batch norm, or QAT's scale and bias) folds into."""
    op = low.fuse_into_producer(node, f"{what} is only supported directly after a convolution")
    if op.kind not in ("conv", "linear") or op.clamp != (-np.inf, np.inf):
        raise UnsupportedError(f"{what} at {where(node)} must directly follow a convolution or linear layer "
                               f"(it follows {op.kind} {op.name!r})")
    return op


def _fold_affine(op: FloatOp, scale: np.ndarray, shift: np.ndarray) -> None:
    """conv -> conv * scale[c] + shift[c]. A conv with its own int8 weights keeps them: the scale
    goes into their per-channel scales (a negative one flips the channel's int8 values)."""
    c = op.weight.shape[0]
    scale, shift = np.broadcast_to(scale, (c,)).astype(np.float64), np.broadcast_to(shift, (c,)).astype(np.float64)
    per_row = (-1,) + (1,) * (op.weight.ndim - 1)
    op.weight = op.weight * scale.reshape(per_row)
    op.bias = op.bias * scale + shift
    if op.wq is not None:
        if op.bq is not None:
            raise UnsupportedError(f"conv {op.name!r}: an int32 bias given by the model cannot be rescaled")
        sign = np.where(scale < 0, -1, 1)
        op.wq = (op.wq.astype(np.int16) * sign.reshape(per_row)).astype(np.int8)
        op.w_scales = op.w_scales * np.abs(scale)


def _channel_const(low: AtenLowering, node: torch.fx.Node, a: Any, c: int, what: str) -> np.ndarray:
    """A constant operand that broadcasts per channel ([C], [1, C, 1], [1, C, 1, 1] or a scalar)."""
    v = low.consts[a.name].detach().double() if isinstance(a, torch.fx.Node) else torch.tensor(float(a))
    if v.numel() == 1:
        return np.full(c, float(v.reshape(-1)[0]))
    if v.numel() == c and (v.ndim == 1 or (v.ndim >= 2 and v.shape[1] == c)):
        return v.reshape(-1).numpy()
    raise UnsupportedError(f"{lw.describe(node, {})} at {where(node)}: the {what} {list(v.shape)} must be a "
                           f"scalar or per channel ({c})")


def _is_const(low: AtenLowering, a: Any) -> bool:
    return not isinstance(a, torch.fx.Node) or a.name in low.consts


def _add(low: AtenLowering, node: torch.fx.Node) -> None:
    """a + b of two computed tensors (ADD), or a conv's output plus a constant per-channel bias
    (a QAT-converted batch norm adds the conv's own bias after rescaling)."""
    a, b = node.args[0], node.args[1] if len(node.args) > 1 else None
    if b is not None and _is_const(low, a) != _is_const(low, b) and node.kwargs.get("alpha", 1) == 1:
        x, c = (b, a) if _is_const(low, a) else (a, b)
        node.args = (x, c)  # fuse_into_producer reads args[0]
        op = _affine_target(low, node, "adding a constant")
        _fold_affine(op, np.ones(op.weight.shape[0]), _channel_const(low, node, c, op.weight.shape[0], "bias"))
        low.retarget(op, node)
        return
    lw.add(low, node)


def _scale(divide: bool):
    def rule(low: AtenLowering, node: torch.fx.Node) -> None:
        """A conv's output times (or divided by) a constant per-channel scale: QAT's convert
        leaves the batch norm scale as conv(x, w * k) / k followed by the batch norm."""
        x, c = node.args[0], node.args[1]
        if not _is_const(low, c) or _is_const(low, x):
            low.refuse(node)
        op = _affine_target(low, node, "a constant scale")
        k = _channel_const(low, node, c, op.weight.shape[0], "scale")
        if np.any(k == 0):
            raise UnsupportedError(f"{lw.describe(node, {})} at {where(node)}: a zero scale")
        _fold_affine(op, 1.0 / k if divide else k, np.zeros_like(k))
        low.retarget(op, node)
    return rule


def _pool(kind: str):
    def rule(low: AtenLowering, node: torch.fx.Node) -> None:
        p = aten_args(node)
        lw.window(low, node, kind, p.pop("self"), p)
    return rule


def _constant_pad(low: AtenLowering, node: torch.fx.Node) -> None:
    k = aten_args(node)
    lw.pad(low, node, k["self"], k["pad"], k.get("mode") or "constant", k.get("value") or 0.0)


def _cat(low: AtenLowering, node: torch.fx.Node) -> None:
    k = aten_args(node)
    lw.cat(low, node, k["tensors"], int(k["dim"]))


def _getitem(low: AtenLowering, node: torch.fx.Node) -> None:
    """Element 0 of _native_batch_norm_legit_no_training's (out, mean, invstd) is its output."""
    src, index = node.args
    if index == 0 and isinstance(src, torch.fx.Node) and src.name in low.alias:
        low.alias[node.name] = low.alias[src.name]
    elif any(True for _ in node.users):
        low.refuse(node)


def _activation_qparams(low: AtenLowering, node: torch.fx.Node) -> tuple[float, int]:
    """(scale, int8 zero point) of a per-tensor quantize or dequantize node (int8, or uint8 shifted)."""
    k = aten_args(node)
    scale, zero = low.number(k["scale"], node, "scale"), int(low.number(k["zero_point"], node, "zero point"))
    dtype, qmin, qmax = k["dtype"], k["quant_min"], k["quant_max"]
    if dtype == torch.uint8 and (qmin, qmax) == (0, 255):
        zero -= 128  # the same real values on int8 codes: q_int8 = q_uint8 - 128
    elif dtype != torch.int8 or (qmin, qmax) != (-128, 127):
        raise UnsupportedError(f"quantization at {where(node)} is {dtype} in [{qmin}, {qmax}]; activations must be "
                               "int8 in [-128, 127] (or uint8 in [0, 255])")
    return scale, zero


def _quantize(low: AtenLowering, node: torch.fx.Node) -> None:
    key = low.value(aten_args(node)["input"], node)
    scale, zero = _activation_qparams(low, node)
    old = low.given.get(key)
    if old is not None and (abs(old[0] - scale) > 1e-9 * scale or old[1] != zero):
        raise UnsupportedError(f"value {key!r} is quantized twice with different parameters ({old} and "
                               f"{(scale, zero)}) at {where(node)}")
    low.given[key] = (scale, zero)
    low.alias[node.name] = key


def _dequantize(low: AtenLowering, node: torch.fx.Node) -> None:
    """A weight's dequantize is read by the conv/linear rule; an activation's must undo its quantize
    (the same scale and zero point), since the int8 graph keeps the codes as they are."""
    src = node.args[0]
    if isinstance(src, torch.fx.Node) and src.name in low.consts:
        return
    key = low.value(src, node)
    if node.target not in DQ_OPS:
        raise UnsupportedError(f"{where(node)} dequantizes an activation per channel; activations must be "
                               "quantized per tensor")
    got, given = _activation_qparams(low, node), low.given.get(key)
    if given is None or abs(given[0] - got[0]) > 1e-9 * got[0] or given[1] != got[1]:
        raise UnsupportedError(f"{where(node)} dequantizes with scale {got[0]:g} and zero point {got[1]} a value "
                               f"quantized with {'nothing' if given is None else given}; they must be the same")
    low.alias[node.name] = key


WEIGHTED = {aten.conv2d.default, aten.conv1d.default, aten.conv2d.padding, aten.conv1d.padding,
            aten.convolution.default, aten.linear.default}


def _register_quant_ops() -> tuple[Any, Any, Any, Any]:
    import torch.ao.quantization.fx._decomposed  # noqa: F401  defines torch.ops.quantized_decomposed

    qd = torch.ops.quantized_decomposed
    return ((qd.quantize_per_tensor.default, qd.quantize_per_tensor.tensor),
            (qd.dequantize_per_tensor.default, qd.dequantize_per_tensor.tensor),
            qd.dequantize_per_channel.default, qd)


Q_OPS, DQ_OPS, DQ_PER_CHANNEL, _QD = _register_quant_ops()
DEQUANTIZE_WEIGHT = {DQ_PER_CHANNEL, *DQ_OPS}

ATEN_RULES: dict[Any, Any] = {
    **{t: _conv for t in WEIGHTED if t is not aten.linear.default},
    aten.linear.default: _linear,
    aten.batch_norm.default: _batch_norm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm,
    aten.relu.default: lw.activation(0.0, np.inf), aten.relu_.default: lw.activation(0.0, np.inf),
    aten.relu6.default: lw.activation(0.0, 6.0),
    aten.hardtanh.default: lw.hardtanh, aten.hardtanh_.default: lw.hardtanh,
    aten.clamp.default: lw.clamp, aten.clamp_.default: lw.clamp,
    aten.add.Tensor: _add, aten.add_.Tensor: _add,
    aten.div.Tensor: _scale(divide=True), aten.mul.Tensor: _scale(divide=False),
    aten.mean.dim: lw.mean,
    aten.adaptive_avg_pool2d.default: lw.adaptive_pool, aten.adaptive_avg_pool1d.default: lw.adaptive_pool,
    aten.flatten.using_ints: lw.reshape, aten.view.default: lw.reshape, aten.reshape.default: lw.reshape,
    aten._unsafe_view.default: lw.reshape,
    aten.max_pool2d.default: _pool("maxpool"), aten.max_pool1d.default: _pool("maxpool"),
    aten.max_pool2d_with_indices.default: _pool("maxpool"),
    aten.avg_pool2d.default: _pool("avgpool"), aten.avg_pool1d.default: _pool("avgpool"),
    aten.constant_pad_nd.default: _constant_pad, aten.pad.default: _constant_pad,
    aten.cat.default: _cat, aten.concat.default: _cat,
    aten.dropout.default: lw.passthrough, aten.clone.default: lw.passthrough, aten.alias.default: lw.passthrough,
    aten.contiguous.default: lw.passthrough,
    **{t: _quantize for t in Q_OPS},
    **{t: _dequantize for t in (*DQ_OPS, DQ_PER_CHANNEL)},
}


def supported_summary() -> str:
    names = sorted({t._schema.name.replace("::", ".") for t in ATEN_RULES if hasattr(t, "_schema")})
    return ", ".join(n for n in names if not n.startswith("quantized_decomposed")) + \
        "; PT2E quantize/dequantize (per-tensor activations, per-channel or per-tensor weights)"


def _fold_constant(low: AtenLowering, node: torch.fx.Node) -> bool:
    """Evaluate a node computed from constants only (e.g. QAT's folded BatchNorm scale of a
    weight) into a constant; weight dequantizes stay nodes, so their int8 values are kept."""
    ins = node.all_input_nodes
    if node.op != "call_function" or not ins or any(a.name not in low.consts for a in ins) or \
            node.target in DEQUANTIZE_WEIGHT or node.target in Q_OPS:
        return False
    args = torch.fx.node.map_arg(node.args, lambda a: low.consts[a.name])
    kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: low.consts[a.name])
    with torch.no_grad():
        value = node.target(*args, **kwargs)
    if not isinstance(value, torch.Tensor):
        return False
    low.consts[node.name] = value
    return True


def _live_nodes(graph: torch.fx.Graph, outputs: set[str]) -> set[str]:
    """Names of the nodes the user outputs depend on."""
    out = next(n for n in graph.nodes if n.op == "output")
    todo = [a for a in out.args[0] if isinstance(a, torch.fx.Node) and a.name in outputs]
    live: set[str] = set()
    while todo:
        n = todo.pop()
        if n.name not in live:
            live.add(n.name)
            todo.extend(n.all_input_nodes)
    return live


def lower_exported(ep) -> FloatPlan:
    """ExportedProgram (or a loaded .pt2) -> FloatPlan, with the model's own quantization if it has one."""
    from microtrain.frontend.torch_fx import output_value, start_input

    low = AtenLowering(ep)
    rank = 4
    sig = ep.graph_signature
    live = _live_nodes(ep.graph, set(sig.user_outputs))  # drops buffer updates (num_batches_tracked += 1)
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            if node.name in low.user_inputs:
                rank = start_input(low, node)
        elif node.op == "output":
            outs = [a for a in node.args[0] if isinstance(a, torch.fx.Node) and a.name in sig.user_outputs]
            node.args = (tuple(outs),)
            low.output = output_value(low, node)
        elif node.name not in live:
            continue
        elif _fold_constant(low, node):
            continue
        elif node.op == "call_function" and node.target is operator.getitem:
            lw.lower_with_source(lambda node=node: _getitem(low, node), node)
        elif node.op == "call_function":
            rule = ATEN_RULES.get(node.target)
            if rule is None:
                lw.lower_with_source(lambda node=node: low.refuse(node), node)
            lw.lower_with_source(lambda node=node, rule=rule: rule(low, node), node)
        else:
            lw.lower_with_source(lambda node=node: low.refuse(node), node)
    lw.finish(low)
    return FloatPlan(low.input, low.output, low.ops, low.shapes, low.flat_of, low.given, rank)
