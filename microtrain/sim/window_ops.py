"""Simulator rules of the window and copy ops (AVG_POOL2D, MAX_POOL2D, PAD, CONCAT, SOFTMAX).

Integer forward on a batch, bit-exact with ``interp/window_ops.py`` (the definitions, TFLite
Micro's kernels); float backward w.r.t. real values, as the compiler's VJP rules, computed by
the device's kernels (``sim/device_grads.py``, bit for bit):

* pools: rounding is straight-through, so the average's gradient is ``g / n`` spread over
  each window and the max's goes to the first maximum of each window (row-major; the C and
  ``interp/window_ops.max_pool2d_grad`` choose the same); a fused clamp narrower than int8
  masks ``g`` first (an average or maximum of int8 values cannot saturate otherwise, so an
  output at -128 or 127 still passes its gradient, as in the compiler);
* PAD and CONCAT move values: their real outputs are torch's ``pad`` / ``cat`` of the real
  inputs (exactly the dequantized integer results: one quantization throughout), and
  autograd gives the crop and the split;
* SOFTMAX has no gradient rule: it only ends a graph, training takes the logits before it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from microtrain.ir.graph import Graph, Node


def _act(*args):
    """``sim.ops.Act(*args)``; imported on use, because sim/ops.py imports this module for its table."""
    from microtrain.sim.ops import Act

    return Act(*args)


def _geometry(node: Node):
    fh, fw = (int(v) for v in node.attrs["filter"])
    sh, sw = (int(v) for v in node.attrs.get("stride", (1, 1)))
    top, left, bottom, right = (int(v) for v in node.attrs.get("padding", (0, 0, 0, 0)))
    return (fh, fw), (sh, sw), (left, right, top, bottom)


def _counts(node: Node, h: int, w: int) -> torch.Tensor:
    """Divisor of each output pixel of an average pool: [1, 1, OH, OW] float64."""
    (fh, fw), stride, pads = _geometry(node)
    if node.attrs.get("count_include_pad", False):
        ones = F.pad(torch.ones(1, 1, h, w, dtype=torch.float64), pads, value=1.0)
    else:
        ones = F.pad(torch.ones(1, 1, h, w, dtype=torch.float64), pads)
    return F.avg_pool2d(ones, (fh, fw), stride, divisor_override=1)


def _window_sums(x_nchw: torch.Tensor, node: Node) -> torch.Tensor:
    (fh, fw), stride, pads = _geometry(node)
    return F.avg_pool2d(F.pad(x_nchw, pads), (fh, fw), stride, divisor_override=1)


def _masked(node: Node) -> bool:
    return (node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)) != (-128, 127)


def _clamp(q: torch.Tensor, node: Node) -> torch.Tensor:
    return torch.clamp(q, node.attrs.get("act_min", -128), node.attrs.get("act_max", 127))


def avg_pool_int(node: Node, x_q: torch.Tensor) -> torch.Tensor:
    x = x_q.permute(0, 3, 1, 2).to(torch.float64)  # |sum| <= 128 * window < 2^53: exact
    acc = _window_sums(x, node).round().to(torch.int64)
    n = _counts(node, x.shape[2], x.shape[3]).to(torch.int64)
    half = n // 2
    q = torch.where(acc > 0, (acc + half) // n, -((-acc + half) // n))  # halves away from zero, as C
    return _clamp(q, node).permute(0, 2, 3, 1)


def _max_windows(x_nchw: torch.Tensor, node: Node) -> torch.Tensor:
    """[N, C, fh*fw, OH*OW]: every window's values, -inf where it overhangs the input."""
    (fh, fw), stride, pads = _geometry(node)
    xp = F.pad(x_nchw, pads, value=float("-inf"))
    n, c = xp.shape[:2]
    cols = F.unfold(xp.reshape(n * c, 1, *xp.shape[2:]), (fh, fw), stride=stride)
    return cols.reshape(n, c, fh * fw, -1)


def max_pool_int(node: Node, x_q: torch.Tensor, out_hw) -> torch.Tensor:
    cols = _max_windows(x_q.permute(0, 3, 1, 2).to(torch.float64), node)
    m = cols.max(dim=2).values.reshape(x_q.shape[0], x_q.shape[3], *out_hw)
    return _clamp(m.to(torch.int64), node).permute(0, 2, 3, 1)


class PoolFn(torch.autograd.Function):
    """AVG_POOL2D / MAX_POOL2D: integer forward, straight-through backward (module doc)."""

    @staticmethod
    def forward(ctx, x_real, node, graph, x_q):  # type: ignore[override]
        y_t = graph.tensors[node.outputs[0]]
        out_hw = y_t.shape[1:3]
        y_q = avg_pool_int(node, x_q) if node.op.name == "AVG_POOL2D" else max_pool_int(node, x_q, out_hw)
        ctx.node = node
        ctx.save_for_backward(x_q, y_q)
        ctx.mark_non_differentiable(y_q)
        return ((y_q.to(torch.float64) - y_t.quant.z) * y_t.quant.s).to(torch.float32), y_q

    @staticmethod
    def backward(ctx, grad_y, _grad_q):  # type: ignore[override]
        from microtrain.sim import device_grads as dg

        x_q, y_q = ctx.saved_tensors
        node = ctx.node
        g = grad_y
        if _masked(node):
            lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
            g = dg.mask_grad(g, (y_q > lo) & (y_q < hi))
        h, w = x_q.shape[1], x_q.shape[2]
        (fh, fw), stride, (left, right, top, bottom) = _geometry(node)
        padding = (top, left, bottom, right)
        if node.op.name == "AVG_POOL2D":
            return dg.avg_pool2d_grad(g, _counts(node, h, w)[0, 0], (h, w), (fh, fw), stride, padding), None, None, None
        cols = _max_windows(x_q.permute(0, 3, 1, 2).to(torch.float64), node)  # [N, C, fh*fw, OH*OW]
        first = cols.argmax(dim=2).reshape(x_q.shape[0], x_q.shape[3], *y_q.shape[1:3]).permute(0, 2, 3, 1)
        return dg.max_pool2d_grad(g, first, (h, w), (fh, fw), stride, padding), None, None, None


def _needs_grad(*acts) -> bool:
    return any(a._real is not None and a._real.requires_grad for a in acts)


def _pool(node: Node, graph: Graph, env: Mapping, params: Mapping) -> list:
    x = env[node.inputs[0]]
    y_t = graph.tensors[node.outputs[0]]
    if not _needs_grad(x):
        q = avg_pool_int(node, x.q) if node.op.name == "AVG_POOL2D" else max_pool_int(node, x.q, y_t.shape[1:3])
        return [_act(q, y_t.quant.s, y_t.quant.z)]
    y_real, y_q = PoolFn.apply(x.real, node, graph, x.q)
    return [_act(y_q, y_t.quant.s, y_t.quant.z, y_real)]


def _pad(node: Node, graph: Graph, env: Mapping, params: Mapping) -> list:
    x = env[node.inputs[0]]
    (_, _), (top, bottom), (left, right), (front, back) = node.attrs["pads"]
    order = (int(front), int(back), int(left), int(right), int(top), int(bottom))  # F.pad: last axis first
    value = int(node.attrs["pad_value"])
    q = F.pad(x.q, order, value=value)
    real = None
    if _needs_grad(x):  # the real pad value, computed as Act.real computes every real value
        pad_real = float(np.float32(value - x.zero) * np.float32(x.scale))
        real = F.pad(x.real, order, value=pad_real)
    return [_act(q, x.scale, x.zero, real)]


def _concat(node: Node, graph: Graph, env: Mapping, params: Mapping) -> list:
    xs = [env[n] for n in node.inputs]
    axis = int(node.attrs["axis"])
    q = torch.cat([x.q for x in xs], dim=axis)
    real = torch.cat([x.real for x in xs], dim=axis) if _needs_grad(*xs) else None
    return [_act(q, xs[0].scale, xs[0].zero, real)]


def _softmax(node: Node, graph: Graph, env: Mapping, params: Mapping) -> list:
    from microtrain.quant import softmax_s8

    x = env[node.inputs[0]]
    if _needs_grad(x):
        raise ValueError(f"no gradient flows through SOFTMAX (node {node.name!r}); train on the logits before it")
    y_t = graph.tensors[node.outputs[0]]
    q = softmax_s8(x.q.numpy().astype(np.int8), node.attrs.get("beta", 1.0), graph.tensors[node.inputs[0]].quant.s)
    return [_act(torch.from_numpy(q.astype(np.int64)), y_t.quant.s, y_t.quant.z)]


WINDOW_SIM_RULES = {"AVG_POOL2D": _pool, "MAX_POOL2D": _pool, "PAD": _pad, "CONCAT": _concat, "SOFTMAX": _softmax}
"""Keyed by op name; ``sim/ops.py`` puts them in ``SIM_RULES``."""
