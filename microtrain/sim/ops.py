"""Per-op rules of the torch simulator: integer forward (bit-exact with the reference
interpreter) and the straight-through backward, as custom autograd Functions.

Each activation is carried as an ``Act``: ``q`` the int8 codes (int64 tensor, batched NHWC)
and ``real`` = s * (q - z) as float32, the tensor autograd flows through. Forward values
always come from the integer path; only gradients are float:

* rounding (requantization) is straight-through: d y_real / d pre_real = 1;
* the clamp (fused ReLU/ReLU6 and int8 saturation) contributes its mask, computed from the
  stored int8 output: ``act_min < y_q < act_max`` (a value sitting exactly on a bound counts
  as clamped, so ReLU has derivative 0 at 0);
* weight and bias gradients are w.r.t. the *real* weights s_w[c] * w_q and biases
  s_x * s_w[c] * b_q (the gradient of the dequantized equivalent), in fp32;
* every gradient is computed by ``sim/device_grads.py``, the device's backward kernels written in
  torch: per sample, the same float32 products added in the same order as the generated C, so
  that a batch-1 run of the simulator trains exactly as the device does, step after step (the
  int32 bias update, scaled up by QAS, would otherwise turn last-bit differences into different
  integers within a few dozen steps).

Integer convolutions run as float convolutions of integer-valued tensors, which is exact
while every partial sum is an integer the float type represents: float32 when the bound
max_c sum |w[c]| * max |x - z_x| < 2^24 holds for the batch (checked per call), float64
otherwise (|acc| <= 255 * 127 * K < 2^53 for any realistic K). ``tests/test_sim_forward.py``
checks bit-exactness on random graphs and on a zoo model.
``SIM_RULES[op](node, graph, env, params) -> list[Act]``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from microtrain.ir.graph import Graph, Node, QParams, Tensor
from microtrain.ir.ops import TRAINING_OPS, Op
from microtrain.runtime.grad_quant import fake_quantize_error
from microtrain.runtime.twins import add_params, avg_pool_params, output_multipliers
from microtrain.sim import device_grads as dg
from microtrain.sim.fixed_point import requantize


def dequantize32(q: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    """(float)(q - z) * float32(s) in float32: mt_dequantize_s8_f32 and the interpreter's DEQUANTIZE."""
    return (q - zero).to(torch.float32) * torch.tensor(scale, dtype=torch.float32)


@dataclasses.dataclass
class Act:
    """One activation: int codes and (lazily) its dequantized real value."""

    q: torch.Tensor
    scale: float
    zero: int
    _real: torch.Tensor | None = None

    @property
    def real(self) -> torch.Tensor:
        if self._real is None:
            self._real = dequantize32(self.q, self.scale, self.zero)
        return self._real


@dataclasses.dataclass
class LayerParams:
    """The current int codes of a weighted layer, and fp32 leaves when it is trained."""

    w_q: torch.Tensor  # int64, OHWI
    b_q: torch.Tensor  # int64, [O]
    w_real: torch.Tensor | None = None  # float32 leaf requiring grad (weights trained)
    b_real: torch.Tensor | None = None  # float32 leaf requiring grad (biases trained)
    error_bits: int = 0  # bits of the layer's error codes in the backward (runtime/grad_quant.py; 0: fp32)
    w_rows: list[int] | None = None  # output channels whose weight gradient is wanted (None: all)


def clamp_mask(y_q: torch.Tensor, node: Node) -> torch.Tensor:
    lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
    return ((y_q > lo) & (y_q < hi)).to(torch.float32)


def _clamp_store(acc_scaled: torch.Tensor, y: Tensor, node: Node) -> torch.Tensor:
    return torch.clamp(acc_scaled + y.quant.z, node.attrs.get("act_min", -128), node.attrs.get("act_max", 127))


def _pad_nchw(x: torch.Tensor, node: Node) -> torch.Tensor:
    top, left, bottom, right = node.attrs.get("padding", (0, 0, 0, 0))
    return F.pad(x, (left, right, top, bottom))


def conv_int(node: Node, graph: Graph, x_q: torch.Tensor, w_q: torch.Tensor, b_q: torch.Tensor) -> torch.Tensor:
    """Integer CONV2D / FULLY_CONNECTED on a batch: int64 codes in, int64 codes out."""
    x_t, w_t, _ = (graph.tensors[n] for n in node.inputs)
    y_t = graph.tensors[node.outputs[0]]
    xs = x_q - x_t.quant.z
    bound = int(w_q.abs().reshape(w_q.shape[0], -1).sum(1).max()) * int(xs.abs().max()) if xs.numel() else 0
    dtype = torch.float32 if bound < 2**24 else torch.float64
    xs = xs.to(dtype)
    if node.op is Op.FULLY_CONNECTED:
        acc = xs @ w_q.to(dtype).t()
    else:
        w = w_q.to(dtype).permute(0, 3, 1, 2)
        acc = F.conv2d(_pad_nchw(xs.permute(0, 3, 1, 2), node), w, stride=tuple(node.attrs.get("stride", (1, 1))),
                       groups=int(node.attrs.get("groups", 1))).permute(0, 2, 3, 1)
    acc = torch.round(acc).to(torch.int64) + b_q
    mult, shift = _multipliers(x_t.quant, w_t.quant, y_t.quant)
    return _clamp_store(requantize(acc, mult, shift), y_t, node)


@functools.lru_cache(maxsize=4096)
def _multipliers(xq: QParams, wq: QParams, yq: QParams) -> tuple[torch.Tensor, torch.Tensor]:
    """``output_multipliers`` of the interpreter, memoised on the (immutable) quantization."""
    shape = (1,)
    x = Tensor("x", shape, "int8", xq)
    mult, shift = output_multipliers(x, Tensor("w", shape, "int8", wq), Tensor("y", shape, "int8", yq))
    return torch.from_numpy(mult), torch.from_numpy(shift)


def real_weights(graph: Graph, node: Node, w_q: torch.Tensor, b_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_w[c] * w_q, s_x * s_w[c] * b_q) as float32 (scale products in float64, one cast)."""
    x_t, w_t, _ = (graph.tensors[n] for n in node.inputs)
    s_w = torch.from_numpy(w_t.quant.scales())
    shape = (-1,) + (1,) * (w_q.dim() - 1)
    w = (w_q.to(torch.float64) * s_w.view(shape)).to(torch.float32)
    b = (b_q.to(torch.float64) * (s_w * x_t.quant.s)).to(torch.float32)
    return w, b


def conv_float(node: Node, x_real: torch.Tensor, w_real: torch.Tensor, b_real: torch.Tensor) -> torch.Tensor:
    """The dequantized float equivalent of a CONV2D/FC before its clamp (NHWC in and out)."""
    if node.op is Op.FULLY_CONNECTED:
        return x_real @ w_real.t() + b_real
    y = F.conv2d(_pad_nchw(x_real.permute(0, 3, 1, 2), node), w_real.permute(0, 3, 1, 2), b_real,
                 stride=tuple(node.attrs.get("stride", (1, 1))), groups=int(node.attrs.get("groups", 1)))
    return y.permute(0, 2, 3, 1)


class WeightedFn(torch.autograd.Function):
    """CONV2D/FC: integer forward; backward = the device's gradient kernels on the masked
    pre-activation gradient (``sim/device_grads.py``: the C's float32 arithmetic, bit for bit).
    With ``error_bits`` (int8/int16 errors, ``runtime/grad_quant.py``) the error is d^ = q 2^e and
    the weight and bias sums are exact (float64, rounded once), as the device's error kernels."""

    @staticmethod
    def forward(ctx, x_real, w_real, b_real, node, graph, x_q, w_q, b_q, rows, error_bits=0):  # type: ignore[override]
        y_q = conv_int(node, graph, x_q, w_q, b_q)
        y_t = graph.tensors[node.outputs[0]]
        ctx.node, ctx.graph, ctx.rows, ctx.error_bits = node, graph, rows, error_bits
        lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
        ctx.save_for_backward(x_q, w_q, (y_q > lo) & (y_q < hi))  # w_q: updated only after the backward
        ctx.mark_non_differentiable(y_q)
        y_real = dequantize32(y_q, y_t.quant.s, y_t.quant.z)
        return y_real, y_q

    @staticmethod
    def backward(ctx, grad_y, _grad_q):  # type: ignore[override]
        x_q, w_q, keep = ctx.saved_tensors
        node, graph = ctx.node, ctx.graph
        x_t, w_t, _ = (graph.tensors[n] for n in node.inputs)
        g = dg.mask_grad(grad_y, keep)
        if ctx.error_bits:  # int8/int16 error codes: the consumers read d^
            g = torch.from_numpy(fake_quantize_error(g.detach().numpy(), ctx.error_bits, batched=True))
        ws = torch.from_numpy(w_t.quant.scales().astype(np.float32))
        stride = tuple(node.attrs.get("stride", (1, 1)))
        padding = tuple(node.attrs.get("padding", (0, 0, 0, 0)))
        groups = int(node.attrs.get("groups", 1))
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = dg.fc_grad_input(g, w_q, ws) if node.op is Op.FULLY_CONNECTED else \
                dg.conv_grad_input(g, w_q, ws, (x_q.shape[1], x_q.shape[2]), stride, padding, groups)
        if ctx.error_bits:
            gw, gb = _int_error_param_grads(ctx, node, g, x_q - x_t.quant.z, x_t.quant.s, w_q.shape)
        else:
            if ctx.needs_input_grad[1] and node.op is Op.FULLY_CONNECTED:
                gw = dg.sample_sum(dg.fc_grad_weight(g, dequantize32(x_q, x_t.quant.s, x_t.quant.z)))
            elif ctx.needs_input_grad[1]:
                rows = ctx.rows if ctx.rows is not None else list(range(w_q.shape[0]))
                part = dg.sample_sum(dg.conv_grad_weight(g, x_q, x_t.quant.z, x_t.quant.s, tuple(w_q.shape[1:3]),
                                                         stride, padding, groups, rows))
                gw = torch.zeros(w_q.shape, dtype=torch.float32)
                gw[rows] = part
            if ctx.needs_input_grad[2]:
                gb = dg.sample_sum(dg.bias_grad(g))
        return gx, gw, gb, None, None, None, None, None, None, None


def _int_error_param_grads(ctx, node: Node, g: torch.Tensor, x_int: torch.Tensor, x_scale: float, w_shape) -> tuple:
    """Weight and bias gradients of a CONV2D/FC whose error ``g`` holds d^ = q 2^e: the weight
    gradient float32(sum d^ (x_q - z_x)) * s_x and the bias gradient float32(sum d^), both sums
    exact in float64 (2^e times an integer), so their order does not matter."""
    gw = gb = None
    if ctx.needs_input_grad[1]:
        if node.op is Op.FULLY_CONNECTED:
            gw = exact_f32_t(g.double().t() @ x_int.double())
        else:
            stride = tuple(node.attrs.get("stride", (1, 1)))
            groups = int(node.attrs.get("groups", 1))
            w_oihw = (w_shape[0], w_shape[3], w_shape[1], w_shape[2])
            x_pad = _pad_nchw(x_int.double().permute(0, 3, 1, 2), node).contiguous()
            gw = exact_f32_t(torch.nn.grad.conv2d_weight(x_pad, w_oihw, g.permute(0, 3, 1, 2).contiguous().double(),
                                                         stride=stride, groups=groups).permute(0, 2, 3, 1))
        gw = (gw * torch.tensor(x_scale, dtype=torch.float32)).contiguous()
    if ctx.needs_input_grad[2]:
        gb = exact_f32_t(g.double().reshape(-1, g.shape[-1]).sum(0))
    return gw, gb


def exact_f32_t(acc: torch.Tensor) -> torch.Tensor:
    """``grad_quant.exact_f32`` on a float64 torch tensor: one rounding to float32."""
    return acc.to(torch.float32)


def _weighted(node: Node, graph: Graph, env: Mapping[str, Act], params: Mapping[str, LayerParams]) -> list[Act]:
    x = env[node.inputs[0]]
    p = params[node.name]
    y_t = graph.tensors[node.outputs[0]]
    needs_grad = p.w_real is not None or p.b_real is not None or (x._real is not None and x._real.requires_grad)
    if not needs_grad:  # frozen and nothing upstream trained: integer only, no autograd
        return [Act(conv_int(node, graph, x.q, p.w_q, p.b_q), y_t.quant.s, y_t.quant.z)]
    w_const, b_const = real_weights(graph, node, p.w_q, p.b_q)
    w_real = p.w_real if p.w_real is not None else w_const
    b_real = p.b_real if p.b_real is not None else b_const
    y_real, y_q = WeightedFn.apply(x.real, w_real, b_real, node, graph, x.q, p.w_q, p.b_q, p.w_rows,
                                   p.error_bits)
    return [Act(y_q, y_t.quant.s, y_t.quant.z, y_real)]


def add_int(node: Node, graph: Graph, a_q: torch.Tensor, b_q: torch.Tensor) -> torch.Tensor:
    a_t, b_t = (graph.tensors[n] for n in node.inputs)
    y_t = graph.tensors[node.outputs[0]]
    p = add_params(a_t, b_t, y_t)
    a = (a_q - a_t.quant.z) << p["left_shift"]
    b = (b_q - b_t.quant.z) << p["left_shift"]
    total = requantize(a, p["a_mult"], p["a_shift"]) + requantize(b, p["b_mult"], p["b_shift"])
    return _clamp_store(requantize(total, p["y_mult"], p["y_shift"]), y_t, node)


class AddFn(torch.autograd.Function):
    """ADD: y_real = a_real + b_real before the clamp; both inputs get the masked gradient."""

    @staticmethod
    def forward(ctx, a_real, b_real, node, graph, a_q, b_q):  # type: ignore[override]
        y_q = add_int(node, graph, a_q, b_q)
        y_t = graph.tensors[node.outputs[0]]
        lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
        ctx.save_for_backward((y_q > lo) & (y_q < hi))
        ctx.mark_non_differentiable(y_q)
        return dequantize32(y_q, y_t.quant.s, y_t.quant.z), y_q

    @staticmethod
    def backward(ctx, grad_y, _grad_q):  # type: ignore[override]
        (keep,) = ctx.saved_tensors
        g = dg.mask_grad(grad_y, keep)
        return g, g, None, None, None, None


def _needs_grad(*acts: Act) -> bool:
    return any(a._real is not None and a._real.requires_grad for a in acts)


def _add(node: Node, graph: Graph, env: Mapping[str, Act], params: Mapping[str, LayerParams]) -> list[Act]:
    a, b = env[node.inputs[0]], env[node.inputs[1]]
    y_t = graph.tensors[node.outputs[0]]
    if not _needs_grad(a, b):
        return [Act(add_int(node, graph, a.q, b.q), y_t.quant.s, y_t.quant.z)]
    y_real, y_q = AddFn.apply(a.real, b.real, node, graph, a.q, b.q)
    return [Act(y_q, y_t.quant.s, y_t.quant.z, y_real)]


def pool_int(node: Node, graph: Graph, x_q: torch.Tensor) -> torch.Tensor:
    x_t = graph.tensors[node.inputs[0]]
    y_t = graph.tensors[node.outputs[0]]
    acc = (x_q - x_t.quant.z).sum(dim=(1, 2), keepdim=True)
    mult, shift = avg_pool_params(x_t, y_t, node.attrs.get("rule", "multiplier"))
    return _clamp_store(requantize(acc, mult, shift), y_t, node)


class PoolFn(torch.autograd.Function):
    """GLOBAL_AVG_POOL: y_real = mean_hw x_real; the gradient spread evenly, g / (h * w) in float32,
    unmasked: the compiler treats the pool as linear (an average of int8 values cannot saturate)."""

    @staticmethod
    def forward(ctx, x_real, node, graph, x_q):  # type: ignore[override]
        y_q = pool_int(node, graph, x_q)
        y_t = graph.tensors[node.outputs[0]]
        ctx.hw = (x_q.shape[1], x_q.shape[2])
        ctx.mark_non_differentiable(y_q)
        return dequantize32(y_q, y_t.quant.s, y_t.quant.z), y_q

    @staticmethod
    def backward(ctx, grad_y, _grad_q):  # type: ignore[override]
        return dg.global_avg_pool_grad(grad_y, ctx.hw), None, None, None


def _pool(node: Node, graph: Graph, env: Mapping[str, Act], params: Mapping[str, LayerParams]) -> list[Act]:
    x = env[node.inputs[0]]
    y_t = graph.tensors[node.outputs[0]]
    if not _needs_grad(x):
        return [Act(pool_int(node, graph, x.q), y_t.quant.s, y_t.quant.z)]
    y_real, y_q = PoolFn.apply(x.real, node, graph, x.q)
    return [Act(y_q, y_t.quant.s, y_t.quant.z, y_real)]


def _reshape(node: Node, graph: Graph, env: Mapping[str, Act], params: Mapping[str, LayerParams]) -> list[Act]:
    x = env[node.inputs[0]]
    shape = (-1,) + tuple(int(d) for d in node.attrs["shape"])[1:]  # batch replaces the leading 1
    real = x._real.reshape(shape) if x._real is not None else None
    return [Act(x.q.reshape(shape), x.scale, x.zero, real)]


def _dequantize(node: Node, graph: Graph, env: Mapping[str, Act], params: Mapping[str, LayerParams]) -> list[Act]:
    # The float result is carried in ``real``; ``q`` is kept so downstream code can inspect it.
    x = env[node.inputs[0]]
    return [Act(x.q, x.scale, x.zero, x.real)]


SimRule = Callable[[Node, Graph, Mapping[str, Act], Mapping[str, LayerParams]], list[Act]]

from microtrain.sim.window_ops import WINDOW_SIM_RULES  # noqa: E402 - after Act, which its rules build

SIM_RULES: dict[Op, SimRule] = {
    Op.CONV2D: _weighted,
    Op.FULLY_CONNECTED: _weighted,
    Op.ADD: _add,
    Op.GLOBAL_AVG_POOL: _pool,
    Op.RESHAPE: _reshape,
    Op.DEQUANTIZE: _dequantize,
    **{Op[name]: rule for name, rule in WINDOW_SIM_RULES.items()},  # pools, PAD, CONCAT, SOFTMAX
}
"""The losses are exempt: the simulator computes the loss on the logits itself (train/device_loss.py)."""

# Loss: computed by the trainer in torch. Fused blocks and the backward/update ops exist only in
# compiled training graphs; the simulator differentiates the inference graph itself.
SIM_EXEMPT = frozenset({Op.SOFTMAX_CROSS_ENTROPY, Op.MEAN_SQUARED_ERROR, Op.FUSED_INVERTED_BOTTLENECK}) | TRAINING_OPS


def to_codes(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a).astype(np.int64))


__all__ = ["Act", "LayerParams", "SIM_RULES", "SIM_EXEMPT", "WeightedFn", "AddFn", "PoolFn", "conv_int",
           "conv_float", "real_weights", "clamp_mask", "to_codes"]
