"""Import a PyTorch ``nn.Module`` through torch.fx into an int8 microtrain Graph.

Pipeline (``import_torch_module``)::

    trace / capture         torch.fx symbolic trace of the module (eval mode); where that
                            fails (Python control flow on shapes, ...), torch.export
                            (``torch_export.py``), whose ATen graph lowers to the same plan
    ShapeProp               every node's shape, batch 1
    lower_to_plan           a FloatPlan (``float_plan.py``): conv/linear/add/pool/reshape ops
                            in torch layout, BatchNorm folded into its conv, ReLU/ReLU6/
                            Hardtanh/clamp folded into the clamp range of the op that produces
                            its input, Dropout dropped; Conv1d as a conv2d of height 1
    ptq.calibrate           per-tensor activation ranges on calibration data
    ptq.quantize_plan       per-channel int8 weights, int32 biases, NHWC/OHWI -> Graph

Lowering is a rule table keyed by module type, function or method name (``MODULE_RULES``,
``FUNCTION_RULES``, ``METHOD_RULES``; shared rules in ``lowering.py``); anything else is an
``UnsupportedError`` naming the module type or function, where it is (module path / fx
node) and its source line.

IR node names are the module paths (``first_conv``, ``blocks.0.pointwise1``,
``classifier``); an add inside module ``blocks.3`` is ``blocks.3.residual``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from microtrain.frontend import lowering as lw
from microtrain.frontend.bn_fold import fold_batch_norm
from microtrain.frontend.float_plan import FloatOp, FloatPlan, UnsupportedError, run_float_plan
from microtrain.frontend.lowering import Lowering, where
from microtrain.ir.graph import Graph

__all__ = ["FloatOp", "FloatPlan", "UnsupportedError", "import_torch_module", "lower_to_plan", "plan_module",
           "run_float_plan", "trace"]


class TraceFailed(UnsupportedError):
    """torch.fx could not trace the module (the torch.export path may still capture it)."""


def layer_name(modules: dict[str, nn.Module], path: str) -> str:
    """A conv/linear's IR name: its module path, or that of the innermost enclosing module
    holding only this one weighted layer (a Conv-BN-ReLU wrapper ``blocks.0.pointwise1.conv``
    is named ``blocks.0.pointwise1``, as in the zoo graphs)."""
    name = path
    while "." in name:
        parent = name.rsplit(".", 1)[0]
        weighted = [m for m in modules[parent].modules() if isinstance(m, WEIGHTED_MODULES)]
        if len(weighted) != 1:
            break
        name = parent
    return name


# --- module rules ---------------------------------------------------------------------------

def _conv(low: Lowering, node: torch.fx.Node, m: nn.Conv2d | nn.Conv1d) -> None:
    kind = type(m).__name__
    one_d = isinstance(m, nn.Conv1d)
    if m.padding_mode != "zeros" or any(d != 1 for d in m.dilation):
        raise UnsupportedError(f"module nn.{kind} at {where(node)}: only dilation 1 and zero padding are "
                               f"supported (has dilation={m.dilation}, padding_mode={m.padding_mode!r})")
    w = m.weight.detach().double().numpy()
    kernel = (1, m.kernel_size[0]) if one_d else tuple(m.kernel_size)
    padding = m.padding if isinstance(m.padding, str) else ((0, m.padding[0]) if one_d else tuple(m.padding))
    stride = (1, m.stride[0]) if one_d else tuple(m.stride)
    if one_d:  # [O, I, k] -> [O, I, 1, k]: a conv2d of height 1
        w = w[:, :, None, :]
    b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(w.shape[0])
    pad = lw.conv_padding(where(node), padding, kernel)
    low.emit(FloatOp(layer_name(low.modules, node.target), "conv", [low.value(node.args[0], node)], node.name, w, b,
                     {"stride": stride, "padding": pad, "groups": m.groups}), node)


def _linear(low: Lowering, node: torch.fx.Node, m: nn.Linear) -> None:
    x = low.value(node.args[0], node)
    if len(low.shapes[x]) != 2:
        raise UnsupportedError(f"module nn.Linear at {where(node)}: input must be [N, features] "
                               f"(flatten first), is {list(low.shapes[x])}")
    w = m.weight.detach().double().numpy()
    b = m.bias.detach().double().numpy() if m.bias is not None else np.zeros(w.shape[0])
    low.emit(FloatOp(layer_name(low.modules, node.target), "linear", [x], node.name, w, b), node)


def _batch_norm(low: Lowering, node: torch.fx.Node, m: nn.BatchNorm2d | nn.BatchNorm1d) -> None:
    kind = type(m).__name__
    op = low.fuse_into_producer(node, f"{kind} is only supported directly after a convolution")
    if op.kind != "conv" or op.clamp != (-np.inf, np.inf):
        raise UnsupportedError(f"module nn.{kind} at {where(node)} must directly follow a convolution "
                               f"(it follows {op.kind} {op.name!r})")
    op.weight, op.bias = fold_batch_norm(op.weight, op.bias, m)
    low.retarget(op, node)


def _hardtanh_module(low: Lowering, node: torch.fx.Node, m: nn.Hardtanh) -> None:
    lw.activation(float(m.min_val), float(m.max_val))(low, node)


def _adaptive_pool_module(low: Lowering, node: torch.fx.Node, m: nn.AdaptiveAvgPool2d | nn.AdaptiveAvgPool1d) -> None:
    size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,)
    if any(s != 1 for s in size):
        raise UnsupportedError(f"module nn.{type(m).__name__} at {where(node)}: only output size 1 "
                               f"(global average pool) is supported, got {m.output_size}")
    lw.pool(low, node, keepdim=True)


def _pool_module(kind: str):
    def rule(low: Lowering, node: torch.fx.Node, m: nn.Module) -> None:
        p = {k: getattr(m, k) for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                        "count_include_pad", "divisor_override", "return_indices") if hasattr(m, k)}
        lw.window(low, node, kind, node.args[0], p)
    return rule


def _pad_module(low: Lowering, node: torch.fx.Node, m: nn.ZeroPad2d | nn.ConstantPad2d | nn.ConstantPad1d) -> None:
    lw.pad(low, node, node.args[0], m.padding, "constant", m.value)


_F_POOL_ARGS = {"max": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                "avg": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                        "divisor_override")}


def _pool_function(kind: str):
    def rule(low: Lowering, node: torch.fx.Node) -> None:
        names = _F_POOL_ARGS["max" if kind == "maxpool" else "avg"]
        p = {k: lw.arg(node, i, k) for i, k in enumerate(names) if lw.arg(node, i, k) is not None}
        lw.window(low, node, kind, p.pop("input"), p)
    return rule


def _pad_function(low: Lowering, node: torch.fx.Node) -> None:
    lw.pad(low, node, node.args[0], lw.arg(node, 1, "pad"), lw.arg(node, 2, "mode", "constant"),
           lw.arg(node, 3, "value", 0.0))


def _cat_function(low: Lowering, node: torch.fx.Node) -> None:
    lw.cat(low, node, lw.arg(node, 0, "tensors"), int(lw.arg(node, 1, "dim", 0)))


def _shape_query(low: Lowering, node: torch.fx.Node, *_: Any) -> None:
    """x.size(...) feeding a view: the view's shape comes from shape propagation instead."""
    if any(u.op != "call_method" or u.target not in ("view", "reshape") for u in node.users):
        low.refuse(node)


WEIGHTED_MODULES = (nn.Conv2d, nn.Conv1d, nn.Linear)
Rule = Callable[..., None]
MODULE_RULES: dict[type, Rule] = {
    nn.Conv2d: _conv,
    nn.Conv1d: _conv,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.ReLU: lw.activation(0.0, np.inf),
    nn.ReLU6: lw.activation(0.0, 6.0),
    nn.Hardtanh: _hardtanh_module,
    nn.Linear: _linear,
    nn.AdaptiveAvgPool2d: _adaptive_pool_module,
    nn.AdaptiveAvgPool1d: _adaptive_pool_module,
    nn.Flatten: lw.reshape,
    nn.MaxPool2d: _pool_module("maxpool"), nn.MaxPool1d: _pool_module("maxpool"),
    nn.AvgPool2d: _pool_module("avgpool"), nn.AvgPool1d: _pool_module("avgpool"),
    nn.ZeroPad2d: _pad_module, nn.ConstantPad2d: _pad_module, nn.ConstantPad1d: _pad_module,
    nn.Dropout: lw.passthrough,
    nn.Identity: lw.passthrough,
}
FUNCTION_RULES: dict[Any, Rule] = {
    operator.add: lw.add, operator.iadd: lw.add, torch.add: lw.add,
    F.relu: lw.activation(0.0, np.inf), torch.relu: lw.activation(0.0, np.inf),
    F.relu6: lw.activation(0.0, 6.0), torch.clamp: lw.clamp, F.hardtanh: lw.hardtanh,
    torch.flatten: lw.reshape, torch.reshape: lw.reshape,
    torch.mean: lw.mean, F.adaptive_avg_pool2d: lw.adaptive_pool, F.adaptive_avg_pool1d: lw.adaptive_pool,
    F.dropout: lw.passthrough,
    F.max_pool2d: _pool_function("maxpool"), F.max_pool1d: _pool_function("maxpool"),
    F.avg_pool2d: _pool_function("avgpool"), F.avg_pool1d: _pool_function("avgpool"),
    torch.max_pool2d: _pool_function("maxpool"), torch.max_pool1d: _pool_function("maxpool"),
    F.pad: _pad_function, torch.cat: _cat_function, torch.concat: _cat_function,
}
METHOD_RULES: dict[str, Rule] = {
    "add": lw.add, "add_": lw.add, "relu": lw.activation(0.0, np.inf), "relu_": lw.activation(0.0, np.inf),
    "clamp": lw.clamp, "clamp_": lw.clamp, "flatten": lw.reshape, "view": lw.reshape, "reshape": lw.reshape,
    "mean": lw.mean, "size": _shape_query,
}


def supported_summary() -> str:
    mods = ", ".join(f"nn.{t.__name__}" for t in MODULE_RULES)
    return (f"{mods}; +, torch.add, F.relu, F.relu6, F.hardtanh, torch.clamp, torch.flatten, torch.mean over "
            "H,W (or L), F.adaptive_avg_pool2d/1d(x, 1), F.max_pool2d/1d, F.avg_pool2d/1d, F.pad (zeros), "
            "torch.cat, F.dropout, view/reshape to [N, -1]")


def _lower_node(low: Lowering, node: torch.fx.Node) -> None:
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
    """torch.fx trace + shape propagation at batch 1 (``module`` must be in eval mode).

    Records each node's stack trace, so errors can name the line of the user's source."""
    tracer = torch.fx.Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(module)
    except Exception as e:  # fx raises TraceError, TypeError, ... on Python control flow over tensors
        raise TraceFailed(f"torch.fx cannot trace {type(module).__name__}: {' '.join(str(e).split())[:300]}") from e
    gm = torch.fx.GraphModule(tracer.root, graph, type(module).__name__)
    with torch.no_grad():
        ShapeProp(gm).propagate(torch.zeros(batch1(example_input_shape)))
    return gm


def batch1(example_input_shape: Sequence[int]) -> tuple[int, ...]:
    return (1,) + tuple(int(d) for d in example_input_shape[1:])


def lower_to_plan(gm: torch.fx.GraphModule) -> FloatPlan:
    """fx graph -> FloatPlan (BN and activations folded, dropout dropped)."""
    low = Lowering(gm.graph, dict(gm.named_modules()), supported_summary)
    rank = 4
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            rank = start_input(low, node)
        elif node.op == "output":
            low.output = output_value(low, node)
        else:
            lw.lower_with_source(lambda node=node: _lower_node(low, node), node)
    lw.finish(low)
    return FloatPlan(low.input, low.output, low.ops, low.shapes, low.flat_of, low.given, rank)


def start_input(low: Lowering, node: torch.fx.Node) -> int:
    """The model's one input: NCHW image, NCL signal or [N, features]; returns its rank."""
    if low.input is not None:
        raise UnsupportedError(f"the model has more than one input ({low.input!r}, {node.name!r})")
    low.input = node.name
    low.alias[node.name] = node.name
    low.shapes[node.name] = lw.shape_of(node)
    rank = lw.torch_rank(node)
    if rank not in (2, 3, 4):
        raise UnsupportedError(f"the input must be an NCHW image, an NCL signal or [N, features], is "
                               f"{list(low.shapes[node.name])}")
    return rank


def output_value(low: Lowering, node: torch.fx.Node) -> str:
    out = node.args[0]
    if isinstance(out, (tuple, list)) and len(out) == 1:
        out = out[0]
    if not isinstance(out, torch.fx.Node):
        raise UnsupportedError("the model must return a single tensor (logits)")
    return low.alias[out.name]


def plan_module(module: nn.Module, example_input_shape: Sequence[int]) -> tuple[FloatPlan, str]:
    """(FloatPlan, how it was captured: 'torch.fx' or 'torch.export') of an eval-mode module.

    torch.fx first (module-level graph, names from module paths); if fx cannot trace the
    module, torch.export, which specialises Python control flow on shapes and constants."""
    try:
        return lower_to_plan(trace(module, example_input_shape)), "torch.fx"
    except TraceFailed as fx_error:
        from microtrain.frontend.torch_export import capture, lower_exported

        return lower_exported(capture(module, example_input_shape, fx_error)), "torch.export"


def default_preprocess(plan: FloatPlan) -> dict:
    """Image preprocessing for the model's input: an image H x W for NCHW, an image of L rows
    (frames) by C columns (features) for a signal [N, C, L], 1 x F for [N, F]."""
    shape = plan.shapes[plan.input]
    if plan.input_rank == 4:
        return {"resolution": [shape[2], shape[3]], "channels": shape[1], "range": [0.0, 1.0]}
    if plan.input_rank == 3:
        return {"resolution": [shape[3], shape[1]], "channels": 1, "range": [0.0, 1.0]}
    return {"resolution": [1, shape[1]], "channels": 1, "range": [0.0, 1.0]}


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

    ``calibration_data``: float inputs in the model's own layout and input range (NCHW
    images, NCL signals or [N, F]). ``method``: ``minmax`` or ``percentile`` (clip
    activation ranges at the given percentile). ``input_quant``: fixed (scale, zero point)
    of the input (else calibrated). ``preprocess``: ``graph.meta["preprocess"]`` (default:
    ``default_preprocess``).
    """
    from microtrain.frontend.ptq import calibrate, quantize_plan

    check_finite_state(module)
    was_training = module.training
    module.eval()
    try:
        plan, source = plan_module(module, example_input_shape)
        ranges = calibrate(plan, calibration_data, method=method, percentile=percentile)
    finally:
        module.train(was_training)
    meta = {"source": source, "model": name or type(module).__name__,
            "preprocess": preprocess or default_preprocess(plan),
            "calibration": {"method": method, "samples": int(len(calibration_data))}}
    if method == "percentile":
        meta["calibration"]["percentile"] = percentile
    return quantize_plan(plan, ranges, input_quant=input_quant, meta=meta)
