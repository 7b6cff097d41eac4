"""Import a PyTorch ``nn.Module`` through torch.fx into an int8 microtrain Graph.

Pipeline (``import_torch_module``)::

    symbolic_trace          torch.fx graph of the module (eval mode)
    ShapeProp               every node's shape, batch 1
    lower_to_plan           a FloatPlan: conv/linear/add/pool/reshape ops in torch layout,
                            BatchNorm folded into its conv, ReLU/ReLU6/clamp folded into the
                            clamp range of the op that produces its input, Dropout dropped
    ptq.calibrate           per-tensor activation ranges on calibration data
    ptq.quantize_plan       per-channel int8 weights, int32 biases, NHWC/OHWI -> Graph

Lowering is a rule table keyed by module type, function or method name (``MODULE_RULES``,
``FUNCTION_RULES``, ``METHOD_RULES``); anything else is an ``UnsupportedError`` naming
the module type or function and where it is (module path / fx node).

IR node names are the module paths (``first_conv``, ``blocks.0.pointwise1``,
``classifier``); an add inside module ``blocks.3`` is ``blocks.3.residual``.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from microtrain.frontend.bn_fold import fold_batch_norm
from microtrain.ir.graph import Graph


class UnsupportedError(ValueError):
    """The module uses something the importer cannot express in the int8 IR."""


@dataclasses.dataclass
class FloatOp:
    """One op of the float plan, in torch layout (NCHW activations, OIHW weights)."""

    name: str
    kind: str  # conv | linear | add | pool | reshape
    inputs: list[str]  # value keys
    output: str  # value key (the fx node whose value this op produces, after fusion)
    weight: np.ndarray | None = None  # float64
    bias: np.ndarray | None = None  # float64
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    clamp: tuple[float, float] = (-np.inf, np.inf)  # folded activation, real units


@dataclasses.dataclass
class FloatPlan:
    input: str
    output: str
    ops: list[FloatOp]
    shapes: dict[str, tuple[int, ...]]  # value key -> torch shape (batch 1)
    flat_of: dict[str, tuple[int, int, int]]  # value key -> (C,H,W) for NHWC-ordered flattens


class _Lowering:
    """State of one lowering: fx node name -> value key, value key -> producing op."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.alias: dict[str, str] = {}
        self.producer: dict[str, FloatOp] = {}
        self.users: dict[str, int] = {}
        self.ops: list[FloatOp] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.flat_of: dict[str, tuple[int, int, int]] = {}
        self.names: set[str] = set()
        self.input: str | None = None
        self.output: str | None = None

    # --- helpers used by the rules ---
    def value(self, arg: Any, node: torch.fx.Node) -> str:
        if not isinstance(arg, torch.fx.Node):
            raise UnsupportedError(f"{describe(node, self.modules)} at {where(node)}: operand {arg!r} is a "
                                   "constant; only tensors computed from the input are supported")
        return self.alias[arg.name]

    def emit(self, op: FloatOp, node: torch.fx.Node) -> None:
        op.name = self.unique(op.name)
        self.ops.append(op)
        self.producer[op.output] = op
        self.alias[node.name] = op.output
        self.shapes[op.output] = shape_of(node)

    def unique(self, name: str) -> str:
        base, i = name, 1
        while name in self.names:
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def fuse_into_producer(self, node: torch.fx.Node, what: str) -> FloatOp:
        """The op producing this node's input, if this node may be folded into it."""
        src = node.args[0]
        key = self.value(src, node)
        op = self.producer.get(key)
        # Every fx node holding this value (the op's output and its Dropout/Identity aliases)
        # must feed only the next one: otherwise another user would see the folded result.
        holders = [n for n in self.gm.graph.nodes if self.alias.get(n.name) == key]
        if op is None or not isinstance(src, torch.fx.Node) or any(len(n.users) != 1 for n in holders):
            reason = "its input is used elsewhere too" if op is not None else "its input is not computed by an op"
            raise UnsupportedError(f"{describe(node, self.modules)} at {where(node)} cannot be folded ({reason}); "
                                   f"{what}")
        return op

    def refuse(self, node: torch.fx.Node) -> None:
        raise UnsupportedError(f"unsupported {describe(node, self.modules)} at {where(node)} "
                               f"(supported: {supported_summary()})")


# --- naming and messages ------------------------------------------------------------------

def scope(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def where(node: torch.fx.Node) -> str:
    if node.op == "call_module":
        return repr(node.target)
    s = scope(node)
    return f"fx node {node.name!r}" + (f" in {s!r}" if s else "")


def describe(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"module nn.{type(modules[node.target]).__name__}"
    if node.op == "call_method":
        return f"method Tensor.{node.target}"
    if node.op == "call_function":
        t = node.target
        mod = getattr(t, "__module__", "") or ""
        prefix = {"torch.nn.functional": "F.", "_operator": "operator."}.get(mod, "torch." if "torch" in mod else "")
        return f"function {prefix}{getattr(t, '__name__', str(t))}"
    return f"{node.op} {node.target}"


def layer_name(modules: dict[str, nn.Module], path: str) -> str:
    """A conv/linear's IR name: its module path, or that of the innermost enclosing module
    holding only this one weighted layer (a Conv-BN-ReLU wrapper ``blocks.0.pointwise1.conv``
    is named ``blocks.0.pointwise1``, as in the zoo graphs)."""
    name = path
    while "." in name:
        parent = name.rsplit(".", 1)[0]
        weighted = [m for m in modules[parent].modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        if len(weighted) != 1:
            break
        name = parent
    return name


def shape_of(node: torch.fx.Node) -> tuple[int, ...]:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        raise UnsupportedError(f"{where(node)} does not produce a single tensor")
    return tuple(int(d) for d in meta.shape)


def _arg(node: torch.fx.Node, i: int, key: str, default: Any = None) -> Any:
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(key, default)


# --- rules --------------------------------------------------------------------------------

def _conv(low: _Lowering, node: torch.fx.Node, m: nn.Conv2d) -> None:
    if m.padding_mode != "zeros" or tuple(m.dilation) != (1, 1):
        raise UnsupportedError(f"module nn.Conv2d at {where(node)}: only dilation 1 and zero padding are "
                               f"supported (has dilation={m.dilation}, padding_mode={m.padding_mode!r})")
    kh, kw = m.kernel_size
    if isinstance(m.padding, str):
        if m.padding == "valid":
            pad = (0, 0, 0, 0)
        elif kh % 2 and kw % 2:
            pad = (kh // 2, kw // 2, kh // 2, kw // 2)
        else:
            raise UnsupportedError(f"module nn.Conv2d at {where(node)}: padding='same' needs an odd kernel")
    else:
        ph, pw = m.padding
        pad = (ph, pw, ph, pw)
    w = m.weight.detach().double().numpy()
    b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(w.shape[0])
    low.emit(FloatOp(layer_name(low.modules, node.target), "conv", [low.value(node.args[0], node)], node.name, w, b,
                     {"stride": tuple(m.stride), "padding": pad, "groups": m.groups}), node)


def _linear(low: _Lowering, node: torch.fx.Node, m: nn.Linear) -> None:
    x = low.value(node.args[0], node)
    if len(low.shapes[x]) != 2:
        raise UnsupportedError(f"module nn.Linear at {where(node)}: input must be [N, features] "
                               f"(flatten first), is {list(low.shapes[x])}")
    w = m.weight.detach().double().numpy()
    b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(w.shape[0])
    low.emit(FloatOp(layer_name(low.modules, node.target), "linear", [x], node.name, w, b), node)


def _batch_norm(low: _Lowering, node: torch.fx.Node, m: nn.BatchNorm2d) -> None:
    op = low.fuse_into_producer(node, "BatchNorm2d is only supported directly after a Conv2d")
    if op.kind != "conv" or op.clamp != (-np.inf, np.inf):
        raise UnsupportedError(f"module nn.BatchNorm2d at {where(node)} must directly follow a Conv2d "
                               f"(it follows {op.kind} {op.name!r})")
    op.weight, op.bias = fold_batch_norm(op.weight, op.bias, m)
    _retarget(low, op, node)


def _retarget(low: _Lowering, op: FloatOp, node: torch.fx.Node) -> None:
    del low.producer[op.output]
    op.output = node.name
    low.producer[node.name] = op
    low.alias[node.name] = node.name
    low.shapes[node.name] = shape_of(node)


def _activation(lo: float, hi: float) -> Callable[[_Lowering, torch.fx.Node], None]:
    def rule(low: _Lowering, node: torch.fx.Node, *_: Any) -> None:
        op = low.fuse_into_producer(node, "an activation must directly follow a conv, linear or add")
        if op.kind not in ("conv", "linear", "add"):
            raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)} follows a {op.kind}; "
                                   "activations fold only into conv, linear or add")
        op.clamp = (max(op.clamp[0], lo), min(op.clamp[1], hi))
        _retarget(low, op, node)
    return rule


def _clamp(low: _Lowering, node: torch.fx.Node, *_: Any) -> None:
    lo, hi = _arg(node, 1, "min"), _arg(node, 2, "max")
    for v in (lo, hi):
        if v is not None and not isinstance(v, (int, float)):
            raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: bounds must be numbers")
    _activation(-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))(low, node)


def _hardtanh_module(low: _Lowering, node: torch.fx.Node, m: nn.Hardtanh) -> None:
    _activation(float(m.min_val), float(m.max_val))(low, node)


def _add(low: _Lowering, node: torch.fx.Node, *_: Any) -> None:
    if len(node.args) < 2 or node.kwargs.get("alpha", 1) != 1:
        raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: only a + b of two tensors "
                               "is supported")
    a, b = low.value(node.args[0], node), low.value(node.args[1], node)
    if low.shapes[a] != low.shapes[b] or low.flat_of.get(a) != low.flat_of.get(b):
        raise UnsupportedError(f"add at {where(node)}: operand shapes differ ({list(low.shapes[a])} vs "
                               f"{list(low.shapes[b])}); broadcasting is not supported")
    s = scope(node)
    adds_here = [n for n in node.graph.nodes if n.op != "call_module" and scope(n) == s and _is_add(n)]
    name = f"{s}.residual" if s and len(adds_here) == 1 else (f"{s}.{node.name}" if s else node.name)
    low.emit(FloatOp(name, "add", [a, b], node.name), node)
    if a in low.flat_of:
        low.flat_of[node.name] = low.flat_of[a]


def _is_add(n: torch.fx.Node) -> bool:
    return (n.op == "call_function" and n.target in (operator.add, operator.iadd, torch.add)) or (
        n.op == "call_method" and n.target in ("add", "add_"))


def _pool(low: _Lowering, node: torch.fx.Node, keepdim: bool) -> None:
    x = low.value(node.args[0], node)
    if len(low.shapes[x]) != 4:
        raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: input must be NCHW")
    name = node.target if node.op == "call_module" else (f"{scope(node)}.pool" if scope(node) else "pool")
    op = FloatOp(name, "pool", [x], node.name)
    if keepdim:
        low.emit(op, node)
        return
    # mean without keepdim: pool to [1,C,1,1] then reshape to [1,C] (two IR nodes).
    op.output = node.name + ".pooled"
    op.name = low.unique(op.name)
    low.ops.append(op)
    low.producer[op.output] = op
    c = low.shapes[x][1]
    low.shapes[op.output] = (1, c, 1, 1)
    low.emit(FloatOp(f"{op.name}.flatten", "reshape", [op.output], node.name, attrs={"shape": (1, c)}), node)


def _adaptive_pool_module(low: _Lowering, node: torch.fx.Node, m: nn.AdaptiveAvgPool2d) -> None:
    size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
    if tuple(size) != (1, 1):
        raise UnsupportedError(f"module nn.AdaptiveAvgPool2d at {where(node)}: only output size (1, 1) "
                               f"(global average pool) is supported, got {m.output_size}")
    _pool(low, node, keepdim=True)


def _adaptive_pool_function(low: _Lowering, node: torch.fx.Node, *_: Any) -> None:
    size = _arg(node, 1, "output_size")
    if size not in (1, (1, 1), [1, 1]):
        raise UnsupportedError(f"F.adaptive_avg_pool2d at {where(node)}: only output size 1 is supported")
    _pool(low, node, keepdim=True)


def _mean(low: _Lowering, node: torch.fx.Node, *_: Any) -> None:
    dims = _arg(node, 1, "dim")
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    x = node.args[0]
    rank = len(shape_of(x)) if isinstance(x, torch.fx.Node) else 0
    if rank != 4 or sorted(d % 4 for d in dims) != [2, 3]:
        raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: only a mean over H and W "
                               f"(dims 2, 3) of an NCHW tensor is supported, got dims {dims}")
    _pool(low, node, keepdim=bool(_arg(node, 2, "keepdim", False)))


def _reshape(low: _Lowering, node: torch.fx.Node, *_: Any) -> None:
    x = low.value(node.args[0], node)
    src, dst = low.shapes[x], shape_of(node)
    if src == dst:
        low.alias[node.name] = x
        return
    if len(src) == 4 and len(dst) == 2 and dst[1] == int(np.prod(src[1:])):
        low.emit(FloatOp(_flatten_name(node), "reshape", [x], node.name, attrs={"shape": dst}), node)
        if src[2] * src[3] > 1:
            low.flat_of[node.name] = (src[1], src[2], src[3])
        return
    raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: only flattening NCHW to "
                           f"[N, C*H*W] is supported, not {list(src)} -> {list(dst)}")


def _flatten_name(node: torch.fx.Node) -> str:
    if node.op == "call_module":
        return node.target
    s = scope(node)
    return f"{s}.flatten" if s else "flatten"


def _passthrough(low: _Lowering, node: torch.fx.Node, *_: Any) -> None:
    low.alias[node.name] = low.value(node.args[0], node)


def _shape_query(low: _Lowering, node: torch.fx.Node, *_: Any) -> None:
    """x.size(...) feeding a view: the view's shape comes from shape propagation instead."""
    if any(u.op != "call_method" or u.target not in ("view", "reshape") for u in node.users):
        low.refuse(node)


Rule = Callable[..., None]
MODULE_RULES: dict[type, Rule] = {
    nn.Conv2d: _conv,
    nn.BatchNorm2d: _batch_norm,
    nn.ReLU: _activation(0.0, np.inf),
    nn.ReLU6: _activation(0.0, 6.0),
    nn.Hardtanh: _hardtanh_module,
    nn.Linear: _linear,
    nn.AdaptiveAvgPool2d: _adaptive_pool_module,
    nn.Flatten: _reshape,
    nn.Dropout: _passthrough,
    nn.Identity: _passthrough,
}
FUNCTION_RULES: dict[Any, Rule] = {
    operator.add: _add, operator.iadd: _add, torch.add: _add,
    F.relu: _activation(0.0, np.inf), torch.relu: _activation(0.0, np.inf),
    F.relu6: _activation(0.0, 6.0), torch.clamp: _clamp, F.hardtanh: _clamp,
    torch.flatten: _reshape, torch.reshape: _reshape,
    torch.mean: _mean, F.adaptive_avg_pool2d: _adaptive_pool_function,
    F.dropout: _passthrough,
}
METHOD_RULES: dict[str, Rule] = {
    "add": _add, "add_": _add, "relu": _activation(0.0, np.inf), "relu_": _activation(0.0, np.inf),
    "clamp": _clamp, "clamp_": _clamp, "flatten": _reshape, "view": _reshape, "reshape": _reshape,
    "mean": _mean, "size": _shape_query,
}


def supported_summary() -> str:
    mods = ", ".join(f"nn.{t.__name__}" for t in MODULE_RULES)
    return (f"{mods}; +, torch.add, F.relu, F.relu6, torch.clamp, torch.flatten, torch.mean over H,W, "
            "F.adaptive_avg_pool2d(x, 1), F.dropout, view/reshape to [N, -1]")


def _lower_node(low: _Lowering, node: torch.fx.Node) -> None:
    if node.op == "call_module":
        m = low.modules[node.target]
        rule = MODULE_RULES.get(type(m))
        if rule is None:
            low.refuse(node)
        rule(low, node, m)
    elif node.op == "call_function":
        rule = FUNCTION_RULES.get(node.target)
        if rule is None:
            low.refuse(node)
        rule(low, node)
    elif node.op == "call_method":
        rule = METHOD_RULES.get(node.target)
        if rule is None:
            low.refuse(node)
        rule(low, node)
    elif node.op == "get_attr":
        raise UnsupportedError(f"direct use of parameter/buffer {node.target!r} at {where(node)} is not "
                               "supported (use it inside a supported module)")
    else:
        low.refuse(node)


def trace(module: nn.Module, example_input_shape: Sequence[int]) -> torch.fx.GraphModule:
    """torch.fx trace + shape propagation at batch 1 (``module`` must be in eval mode)."""
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception as e:  # fx raises TraceError, TypeError, ... on data-dependent control flow
        raise UnsupportedError(f"torch.fx cannot trace {type(module).__name__}: {e}") from e
    shape = (1,) + tuple(int(d) for d in example_input_shape[1:])
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(shape))
    return gm


def lower_to_plan(gm: torch.fx.GraphModule) -> FloatPlan:
    """fx graph -> FloatPlan (BN and activations folded, dropout dropped)."""
    low = _Lowering(gm)
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if low.input is not None:
                raise UnsupportedError(f"the model has more than one input ({low.input!r}, {node.name!r})")
            low.input = node.name
            low.alias[node.name] = node.name
            low.shapes[node.name] = shape_of(node)
            if len(low.shapes[node.name]) != 4:
                raise UnsupportedError(f"the input must be an NCHW image tensor, is {list(low.shapes[node.name])}")
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, torch.fx.Node):
                raise UnsupportedError("the model must return a single tensor (logits)")
            low.output = low.alias[out.name]
        else:
            _lower_node(low, node)
    if low.output not in low.producer:
        raise UnsupportedError("the model's output is not computed by any supported op")
    if len(low.shapes[low.output]) != 2:
        raise UnsupportedError(f"the model must return [N, classes] logits, returns {list(low.shapes[low.output])}")
    return FloatPlan(low.input, low.output, low.ops, low.shapes, low.flat_of)


def run_float_plan(plan: FloatPlan, x: torch.Tensor, record: dict[str, torch.Tensor] | None = None,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Evaluate the folded float plan (the model the int8 graph approximates), NCHW, in ``dtype``."""
    values = {plan.input: x.to(dtype)}
    for op in plan.ops:
        ins = [values[k] for k in op.inputs]
        if op.kind == "conv":
            a = op.attrs
            t, l, bt, r = a["padding"]
            w, b = torch.from_numpy(op.weight).to(dtype), torch.from_numpy(op.bias).to(dtype)
            y = F.conv2d(F.pad(ins[0], (l, r, t, bt)), w, b, stride=a["stride"], groups=a["groups"])
        elif op.kind == "linear":
            y = F.linear(ins[0], torch.from_numpy(op.weight).to(dtype), torch.from_numpy(op.bias).to(dtype))
        elif op.kind == "add":
            y = ins[0] + ins[1]
        elif op.kind == "pool":
            y = ins[0].mean(dim=(2, 3), keepdim=True)
        else:  # reshape
            y = ins[0].reshape(ins[0].shape[0], -1)
        if op.clamp != (-np.inf, np.inf):
            y = y.clamp(min=None if np.isinf(op.clamp[0]) else op.clamp[0],
                        max=None if np.isinf(op.clamp[1]) else op.clamp[1])
        values[op.output] = y
        if record is not None:
            record[op.output] = y
    return values[plan.output]


def check_finite_state(module: nn.Module) -> None:
    """Every floating parameter and buffer must be finite: a NaN weight would quantize to a model
    whose scales are NaN and that scores chance. Raises UnsupportedError naming the entry."""
    for name, t in module.state_dict().items():
        if torch.is_tensor(t) and t.is_floating_point():
            bad = ~torch.isfinite(t)
            if bool(bad.any()):
                kinds = sorted({"NaN" if bool(torch.isnan(v)) else "infinity" for v in t[bad].flatten()[:100]})
                raise UnsupportedError(f"checkpoint entry {name!r} holds {int(bad.sum())} non-finite value(s) "
                                       f"({' and '.join(kinds)}); the float model is broken, so quantizing it "
                                       "cannot give a working int8 model")


def import_torch_module(module: nn.Module, example_input_shape: Sequence[int], calibration_data: Any,
                        *, method: str = "minmax", percentile: float = 99.99,
                        input_quant: tuple[float, int] | None = None, preprocess: dict | None = None,
                        name: str | None = None) -> Graph:
    """Trace, fold, calibrate and quantize ``module`` into a verified int8 Graph.

    ``calibration_data``: float NCHW inputs (tensor or array [N,C,H,W]) in the model's
    input range. ``method``: ``minmax`` or ``percentile`` (clip activation ranges at the
    given percentile). ``input_quant``: fixed (scale, zero point) of the input (else
    calibrated). ``preprocess``: ``graph.meta["preprocess"]`` (default: the example
    shape's resolution and channels, range [0, 1]).
    """
    from microtrain.frontend.ptq import calibrate, quantize_plan

    check_finite_state(module)
    was_training = module.training
    module.eval()
    try:
        gm = trace(module, example_input_shape)
        plan = lower_to_plan(gm)
        ranges = calibrate(plan, calibration_data, method=method, percentile=percentile)
    finally:
        module.train(was_training)
    _, c, h, w = example_input_shape
    meta = {"source": "torch.fx", "model": name or type(module).__name__,
            "preprocess": preprocess or {"resolution": [h, w], "channels": c, "range": [0.0, 1.0]},
            "calibration": {"method": method, "samples": int(len(calibration_data))}}
    if method == "percentile":
        meta["calibration"]["percentile"] = percentile
    return quantize_plan(plan, ranges, input_quant=input_quant, meta=meta)
