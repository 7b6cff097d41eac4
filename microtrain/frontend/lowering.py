"""Lowering a torch fx graph to a FloatPlan: the state, the messages, and the rules shared by
the torch.fx importer (``torch_fx.py``, module-level graphs) and the torch.export importer
(``torch_export.py``, ATen graphs, .pt2 files, PT2E-quantized models).

A rule is ``rule(low, node, *extra) -> None``: it reads the node's arguments, emits a
``FloatOp`` (``low.emit``) or folds the node into the op that produced its input
(activations, BatchNorm), or makes the node an alias of its input (dropout, identity).
Anything a rule cannot express raises ``UnsupportedError`` naming what (module type or
function), where (module path / fx node) and, when torch recorded it, the source line.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.fx

from microtrain.frontend.float_plan import FloatOp, UnsupportedError

_TORCH_DIR = os.path.dirname(torch.__file__)


class Lowering:
    """State of one lowering: fx node name -> value key, value key -> producing op."""

    def __init__(self, graph: torch.fx.Graph, modules: dict[str, Any] | None = None,
                 supported: Callable[[], str] = lambda: "") -> None:
        self.graph = graph
        self.modules = modules or {}
        self.supported = supported
        self.alias: dict[str, str] = {}
        self.producer: dict[str, FloatOp] = {}
        self.ops: list[FloatOp] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.flat_of: dict[str, tuple[int, int, int]] = {}
        self.given: dict[str, tuple[float, int]] = {}
        self.names: set[str] = set()
        self.input: str | None = None
        self.output: str | None = None

    # --- helpers used by the rules ---
    def value(self, arg: Any, node: torch.fx.Node) -> str:
        if not isinstance(arg, torch.fx.Node) or arg.name not in self.alias:
            raise UnsupportedError(f"{describe(node, self.modules)} at {where(node)}: operand "
                                   f"{getattr(arg, 'name', arg)!r} is a constant; only tensors computed from the "
                                   "input are supported")
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
        holders = [n for n in self.graph.nodes if self.alias.get(n.name) == key]
        # Every fx node holding this value (the op's output, its Dropout/Identity aliases, PT2E's
        # quantize/dequantize of it) may feed only this node: another user would see the folded
        # result. (A value quantized in between, conv -> q -> dq -> relu6 -> q, is folded too:
        # the op then rounds once, to the activation's output grid.)
        users = {u for n in holders for u in n.users if u.name not in self.alias or self.alias[u.name] != key}
        if op is None or users != {node}:
            reason = "its input is used elsewhere too" if op is not None else "its input is not computed by an op"
            raise UnsupportedError(f"{describe(node, self.modules)} at {where(node)} cannot be folded ({reason}); "
                                   f"{what}")
        return op

    def retarget(self, op: FloatOp, node: torch.fx.Node) -> None:
        """``op`` now produces ``node``'s value (an activation or BatchNorm folded into it)."""
        del self.producer[op.output]
        op.output = node.name
        self.producer[node.name] = op
        self.alias[node.name] = node.name
        self.shapes[node.name] = shape_of(node)

    def refuse(self, node: torch.fx.Node) -> None:
        raise UnsupportedError(f"unsupported {describe(node, self.modules)} at {where(node)} "
                               f"(supported: {self.supported()})")


# --- naming and messages ------------------------------------------------------------------

def scope(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else ""


def scope_type(node: torch.fx.Node) -> str:
    """Class name of the innermost module the node was traced in ('' at top level)."""
    stack = node.meta.get("nn_module_stack") or {}
    if len(stack) < 2:
        return ""
    t = list(stack.values())[-1][1]
    return (t if isinstance(t, str) else getattr(t, "__qualname__", str(t))).rsplit(".", 1)[-1]


def source_line(node: torch.fx.Node) -> str:
    """'file.py:LINE: code' of the innermost frame outside torch that made this node, or ''."""
    trace = node.meta.get("stack_trace") or ""
    frames = []
    lines = trace.splitlines()
    for i, line in enumerate(lines):
        line = line.strip()
        if line.startswith("File "):
            parts = line.split('"')
            if len(parts) >= 3:
                path = parts[1]
                num = line.split("line ", 1)[1].split(",", 1)[0] if "line " in line else "?"
                code = lines[i + 1].strip() if i + 1 < len(lines) else ""
                frames.append((path, num, code))
    user = [f for f in frames if not f[0].startswith(_TORCH_DIR) and "<eval_with_key>" not in f[0]]
    if not user:
        return ""
    path, num, code = user[-1]
    return f"{os.path.basename(path)}:{num}: {code}"


def where(node: torch.fx.Node) -> str:
    if node.op == "call_module":
        text = repr(node.target)
    else:
        s, t = scope(node), scope_type(node)
        text = f"fx node {node.name!r}" + (f" in {s!r}" + (f" (nn.{t})" if t else "") if s else "")
    return text


def lower_with_source(rule: Callable[[], None], node: torch.fx.Node) -> None:
    """Run one node's lowering; an error gets the node's source line appended (when known)."""
    try:
        rule()
    except UnsupportedError as e:
        line = source_line(node)
        if not line or line in str(e):
            raise
        raise UnsupportedError(f"{e} [source: {line}]") from None


def describe(node: torch.fx.Node, modules: dict[str, Any]) -> str:
    if node.op == "call_module":
        return f"module nn.{type(modules[node.target]).__name__}"
    if node.op == "call_method":
        return f"method Tensor.{node.target}"
    if node.op == "call_function":
        t = node.target
        if isinstance(t, torch._ops.OpOverload):
            return f"op {t._schema.name.replace('::', '.')}"
        mod = getattr(t, "__module__", "") or ""
        prefix = {"torch.nn.functional": "F.", "_operator": "operator."}.get(mod, "torch." if "torch" in mod else "")
        return f"function {prefix}{getattr(t, '__name__', str(t))}"
    return f"{node.op} {node.target}"


def shape_of(node: torch.fx.Node) -> tuple[int, ...]:
    """The node's torch shape, a 1-D signal [N, C, L] as [N, C, 1, L] (see float_plan)."""
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        meta = node.meta.get("val")
    if meta is None or not hasattr(meta, "shape"):
        raise UnsupportedError(f"{where(node)} does not produce a single tensor")
    shape = tuple(int(d) for d in meta.shape)
    return (shape[0], shape[1], 1, shape[2]) if len(shape) == 3 else shape


def torch_rank(node: Any) -> int:
    meta = node.meta.get("tensor_meta") or node.meta.get("val") if isinstance(node, torch.fx.Node) else None
    return len(meta.shape) if meta is not None and hasattr(meta, "shape") else 0


def arg(node: torch.fx.Node, i: int, key: str, default: Any = None) -> Any:
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(key, default)


# --- rules shared by both importers ---------------------------------------------------------

def activation(lo: float, hi: float) -> Callable[..., None]:
    def rule(low: Lowering, node: torch.fx.Node, *_: Any) -> None:
        op = low.fuse_into_producer(node, "an activation must directly follow a conv, linear or add")
        if op.kind not in ("conv", "linear", "add"):
            raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)} follows a {op.kind}; "
                                   "activations fold only into conv, linear or add")
        op.clamp = (max(op.clamp[0], lo), min(op.clamp[1], hi))
        low.retarget(op, node)
    return rule


def clamp(low: Lowering, node: torch.fx.Node, *_: Any, defaults: tuple[Any, Any] = (None, None)) -> None:
    lo, hi = arg(node, 1, "min", defaults[0]), arg(node, 2, "max", defaults[1])
    if node.kwargs.get("min_val") is not None or node.kwargs.get("max_val") is not None:
        lo, hi = node.kwargs.get("min_val", lo), node.kwargs.get("max_val", hi)
    for v in (lo, hi):
        if v is not None and not isinstance(v, (int, float)):
            raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: bounds must be numbers")
    activation(-np.inf if lo is None else float(lo), np.inf if hi is None else float(hi))(low, node)


def hardtanh(low: Lowering, node: torch.fx.Node, *_: Any) -> None:
    """F.hardtanh(x, min_val=-1, max_val=1): a clamp with those defaults."""
    clamp(low, node, defaults=(-1.0, 1.0))


def add(low: Lowering, node: torch.fx.Node, *_: Any) -> None:
    if len(node.args) < 2 or node.kwargs.get("alpha", 1) != 1:
        raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: only a + b of two tensors "
                               "is supported")
    a, b = low.value(node.args[0], node), low.value(node.args[1], node)
    if low.shapes[a] != low.shapes[b] or low.flat_of.get(a) != low.flat_of.get(b):
        raise UnsupportedError(f"add at {where(node)}: operand shapes differ ({list(low.shapes[a])} vs "
                               f"{list(low.shapes[b])}); broadcasting is not supported")
    s = scope(node)
    adds_here = [n for n in node.graph.nodes if n.op != "call_module" and scope(n) == s and is_add(n)]
    name = f"{s}.residual" if s and len(adds_here) == 1 else (f"{s}.{node.name}" if s else node.name)
    low.emit(FloatOp(name, "add", [a, b], node.name), node)
    if a in low.flat_of:
        low.flat_of[node.name] = low.flat_of[a]


def is_add(n: torch.fx.Node) -> bool:
    aten = torch.ops.aten
    return (n.op == "call_function" and n.target in (operator.add, operator.iadd, torch.add, aten.add.Tensor,
                                                     aten.add_.Tensor)) or (
        n.op == "call_method" and n.target in ("add", "add_"))


def pool(low: Lowering, node: torch.fx.Node, keepdim: bool) -> None:
    x = low.value(node.args[0], node)
    if len(low.shapes[x]) != 4:
        raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: input must be NCHW or NCL")
    name = node.target if node.op == "call_module" else (f"{scope(node)}.pool" if scope(node) else "pool")
    # without keepdim the op outputs [N, C] (the int8 graph: GLOBAL_AVG_POOL, then RESHAPE)
    low.emit(FloatOp(name, "pool", [x], node.name, attrs={} if keepdim else {"keepdim": False}), node)


def adaptive_pool(low: Lowering, node: torch.fx.Node, *_: Any) -> None:
    size = arg(node, 1, "output_size")
    if size not in (1, (1, 1), [1, 1], (1,), [1]):
        raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: only output size 1 (global "
                               f"average pool) is supported, got {size}")
    pool(low, node, keepdim=True)


def mean(low: Lowering, node: torch.fx.Node, *_: Any) -> None:
    dims = arg(node, 1, "dim")
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    rank = torch_rank(node.args[0])
    spatial = {4: [2, 3], 3: [2]}.get(rank)
    if spatial is None or sorted(d % rank for d in dims) != spatial:
        raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: only a mean over H and W "
                               f"(dims 2, 3) of an NCHW tensor or over L (dim 2) of an NCL one is supported, "
                               f"got dims {dims}")
    pool(low, node, keepdim=bool(arg(node, 2, "keepdim", False)))


def reshape(low: Lowering, node: torch.fx.Node, *_: Any) -> None:
    x = low.value(node.args[0], node)
    src, dst = low.shapes[x], shape_of(node)
    if src == dst:
        low.alias[node.name] = x
        return
    if len(src) == 4 and len(dst) == 2 and dst[1] == int(np.prod(src[1:])):
        low.emit(FloatOp(flatten_name(node), "reshape", [x], node.name, attrs={"shape": dst}), node)
        if src[2] * src[3] > 1:
            low.flat_of[node.name] = (src[1], src[2], src[3])
        return
    raise UnsupportedError(f"{describe(node, low.modules)} at {where(node)}: only flattening NCHW to "
                           f"[N, C*H*W] is supported, not {list(src)} -> {list(dst)}")


def flatten_name(node: torch.fx.Node) -> str:
    if node.op == "call_module":
        return node.target
    s = scope(node)
    return f"{s}.flatten" if s else "flatten"


def passthrough(low: Lowering, node: torch.fx.Node, *_: Any) -> None:
    low.alias[node.name] = low.value(node.args[0], node)


def conv_padding(where_: str, padding: Any, kernel: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from torch's padding (int, pair, 'valid' or 'same')."""
    kh, kw = kernel
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if kh % 2 and kw % 2:
            return (kh // 2, kw // 2, kh // 2, kw // 2)
        raise UnsupportedError(f"conv at {where_}: padding='same' needs an odd kernel")
    ph, pw = padding
    return (ph, pw, ph, pw)


def finish(low: Lowering) -> None:
    """Checks on the whole lowering: an output computed by an op, [N, K] logits."""
    if low.output not in low.producer:
        raise UnsupportedError("the model's output is not computed by any supported op")
    if len(low.shapes[low.output]) != 2:
        raise UnsupportedError(f"the model must return [N, classes] logits, returns {list(low.shapes[low.output])}")


# --- window and copy ops (the IR's MAX_POOL2D, AVG_POOL2D, PAD, CONCAT: TFLite Micro's kernels) ---

def _pair(v: Any, one_d: bool, fill: int) -> tuple[int, int]:
    """A torch size argument as (h, w); a 1-D op (on [N, C, 1, L]) has height ``fill``."""
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    if one_d:
        return (fill, int(v[0]))
    return (int(v[0]), int(v[-1])) if len(v) in (1, 2) else (int(v[0]), int(v[1]))


def window(low: Lowering, node: torch.fx.Node, kind: str, x_arg: Any, p: dict[str, Any]) -> None:
    """max or average pooling: ``p`` holds torch's kernel_size, stride, padding, dilation,
    ceil_mode, count_include_pad, divisor_override (missing: torch's defaults)."""
    what = f"{describe(node, low.modules)} at {where(node)}"
    x = low.value(x_arg, node)
    if len(low.shapes[x]) != 4:
        raise UnsupportedError(f"{what}: input must be NCHW or NCL, is {list(low.shapes[x])}")
    one_d = torch_rank(x_arg) == 3
    if p.get("ceil_mode"):
        raise UnsupportedError(f"{what}: ceil_mode=True is not supported (its last window may hang over the "
                               "padding); use ceil_mode=False or pad explicitly")
    if p.get("return_indices"):
        raise UnsupportedError(f"{what}: return_indices=True is not supported")
    if p.get("divisor_override"):
        raise UnsupportedError(f"{what}: divisor_override is not supported")
    dilation = p.get("dilation", 1)
    if any(d != 1 for d in (dilation if isinstance(dilation, (list, tuple)) else [dilation])):
        raise UnsupportedError(f"{what}: only dilation 1 is supported, has {dilation}")
    kernel = _pair(p["kernel_size"], one_d, 1)
    stride = p.get("stride")
    stride = kernel if stride is None or (isinstance(stride, (list, tuple)) and not stride) else \
        _pair(stride, one_d, 1)
    padding = _pair(p.get("padding", 0), one_d, 0)
    attrs = {"filter": kernel, "stride": stride, "padding": padding}
    if kind == "avgpool":
        attrs["count_include_pad"] = bool(p.get("count_include_pad", True))
    name = node.target if node.op == "call_module" else (f"{scope(node)}.{kind}" if scope(node) else kind)
    low.emit(FloatOp(name, kind, [x], node.name, attrs=attrs), node)


def pad(low: Lowering, node: torch.fx.Node, x_arg: Any, pads: Sequence[int], mode: str = "constant",
        value: Any = 0.0) -> None:
    """F.pad / nn.ZeroPad2d / nn.ConstantPad*d with zeros on W and H (torch's order: left,
    right, top, bottom), onto PAD with the zero point as the pad value (real 0, exact)."""
    what = f"{describe(node, low.modules)} at {where(node)}"
    x = low.value(x_arg, node)
    pads = [int(v) for v in pads]
    if mode != "constant" or float(value or 0.0) != 0.0:
        raise UnsupportedError(f"{what}: only zero padding is supported (mode='constant', value=0), got "
                               f"mode={mode!r}, value={value}")
    if len(pads) not in (2, 4) or min(pads) < 0 or len(low.shapes[x]) != 4:
        raise UnsupportedError(f"{what}: only non-negative padding of the last one or two axes of an NCHW or "
                               f"NCL tensor is supported, got pad={pads} on {list(low.shapes[x])}")
    if len(pads) == 2 or torch_rank(x_arg) == 3:
        if len(pads) != 2:
            raise UnsupportedError(f"{what}: an NCL tensor can be padded along L only, got pad={pads}")
        pads = pads + [0, 0]
    name = node.target if node.op == "call_module" else (f"{scope(node)}.pad" if scope(node) else "pad")
    left, right, top, bottom = pads
    low.emit(FloatOp(name, "pad", [x], node.name, attrs={"padding": (top, left, bottom, right)}), node)


def cat(low: Lowering, node: torch.fx.Node, tensors: Sequence[Any], dim: int) -> None:
    """torch.cat of computed tensors along channels (or H, W, L): CONCAT; its inputs and output
    share one quantization (``ptq.shared_quantization``)."""
    what = f"{describe(node, low.modules)} at {where(node)}"
    keys = [low.value(t, node) for t in tensors]
    rank = torch_rank(node)
    d = dim % rank if rank else dim
    shapes = [low.shapes[k] for k in keys]
    if any(k in low.flat_of for k in keys) or rank not in (2, 3, 4) or d == 0:
        raise UnsupportedError(f"{what}: only concatenation of [N, C, H, W], [N, C, L] or [N, F] tensors "
                               f"along a non-batch axis is supported (dim={dim}, shapes {[list(s) for s in shapes]})")
    plan_dim = {4: {1: 1, 2: 2, 3: 3}, 3: {1: 1, 2: 3}, 2: {1: 1}}[rank][d]  # NCL is held as [N, C, 1, L]
    axis = 1 if rank == 2 else {1: 3, 2: 1, 3: 2}[plan_dim]  # the IR's (NHWC) axis
    name = f"{scope(node)}.cat" if scope(node) else "cat"
    low.emit(FloatOp(name, "concat", keys, node.name, attrs={"dim": plan_dim, "axis": axis}), node)
