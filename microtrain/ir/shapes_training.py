"""Shape rules of the training ops (backward + update) that the compiler appends.

``ir/registry.py`` lists them in ``SHAPE_RULES``, so ``verify_graph`` checks a training graph
(after every pass, or loaded from a file with only ``microtrain.ir`` imported) exactly as it
checks an inference graph. Gradients are fp32 and w.r.t. the real value of the tensor they
belong to; see the op list in ``ir/ops.py``.
"""

from __future__ import annotations

from microtrain.ir.buffer_sizes import clamp_mask_get_buffer_size as mask_bytes
from microtrain.ir.check import OutSpec
from microtrain.ir.check import expect as _expect
from microtrain.ir.graph import Node, Tensor
from microtrain.ir.ops import Op


def _n_in(node: Node, ins: list[Tensor], n: int) -> None:
    _expect(len(ins) == n, node, f"expects {n} inputs, has {len(ins)}")
    _expect(len(node.outputs) == 1, node, f"expects 1 output, has {len(node.outputs)}")


def _f32(node: Node, t: Tensor, role: str) -> None:
    _expect(t.dtype == "float32", node, f"{role} {t.name!r} must be float32, is {t.dtype}")


def _error_in(node: Node, ins: list[Tensor], n: int) -> list[Tensor]:
    """The inputs of a consumer of a layer's error: n of them, the first the error -- float32, or
    with ``error_bits`` B its int8/int16 codes, with their exponent (int32 [1]) appended last."""
    bits = int(node.attrs.get("error_bits", 0))
    if not bits:
        _n_in(node, ins, n)
        _f32(node, ins[0], "gradient")
        return ins
    _n_in(node, ins, n + 1)
    _expect(ins[0].dtype == f"int{bits}", node, f"error codes {ins[0].name!r} must be int{bits}, is {ins[0].dtype}")
    _expect(ins[-1].dtype == "int32" and ins[-1].shape == (1,), node, "error exponent must be int32 [1]")
    return ins[:-1]


def _loss_grad(node: Node, ins: list[Tensor]) -> OutSpec:
    _n_in(node, ins, 2)
    logits, label = ins
    _f32(node, logits, "logits")
    _expect(label.dtype == "int32" and label.shape == (1,), node, "label must be int32 [1]")
    return [(logits.shape, "float32")]


def _mse_grad(node: Node, ins: list[Tensor]) -> OutSpec:
    _n_in(node, ins, 2)
    pred, target = ins
    _f32(node, pred, "prediction")
    _expect(target.dtype == "int8" and target.quant is not None and target.size == pred.size, node,
            f"target {target.name!r} must be int8 of the prediction's size")
    return [(pred.shape, "float32")]


def _clamp_mask(node: Node, ins: list[Tensor]) -> OutSpec:
    _n_in(node, ins, 1)
    _expect(ins[0].dtype == "int8", node, f"input {ins[0].name!r} must be int8")
    return [((mask_bytes(ins[0].size),), "uint8")]


def _mask_grad(node: Node, ins: list[Tensor]) -> OutSpec:
    """-> the masked gradient (float32), or with ``error_bits`` B the error's int{B} codes and its
    exponent int32 [1] (``runtime/grad_quant.py``)."""
    bits = int(node.attrs.get("error_bits", 0))
    _expect(len(ins) == 2, node, f"expects 2 inputs, has {len(ins)}")
    _expect(len(node.outputs) == (2 if bits else 1), node, f"expects {2 if bits else 1} outputs")
    g, m = ins
    _f32(node, g, "gradient")
    _expect(m.dtype == "uint8" and m.shape == (mask_bytes(g.size),), node,
            f"mask {m.name!r} must be uint8 [{mask_bytes(g.size)}], is {m.dtype}{list(m.shape)}")
    _expect(bits in (0, 8, 16), node, f"error_bits {bits} must be 8 or 16")
    return [(g.shape, f"int{bits}"), ((1,), "int32")] if bits else [(g.shape, "float32")]


def _conv_grad_input(node: Node, ins: list[Tensor]) -> OutSpec:
    g, w = _error_in(node, ins, 2)
    _expect(w.dtype == "int8" and len(w.shape) == 4 and w.quant is not None, node, "weight must be int8 OHWI")
    _expect(len(g.shape) == 4 and g.shape[3] == w.shape[0], node,
            f"gradient {g.shape} does not match weight {w.shape}")
    shape = tuple(node.attrs["input_shape"])
    groups = int(node.attrs.get("groups", 1))
    _expect(shape[3] == w.shape[3] * groups, node, f"input shape {shape} does not match weight {w.shape}")
    return [(shape, "float32")]


def _conv_grad_weight(node: Node, ins: list[Tensor]) -> OutSpec:
    g, x = _error_in(node, ins, 2)
    _expect(x.dtype == "int8" and len(x.shape) == 4, node, f"saved input {x.name!r} must be int8 NHWC")
    channels = tuple(node.attrs["channels"])
    kh, kw, per_group = node.attrs["kernel"]
    _expect(all(0 <= c < g.shape[3] for c in channels), node, "kept channel out of range")
    x_channels = node.attrs.get("x_channels")
    if x_channels is not None:
        _expect(len(x_channels) == x.shape[3], node, f"saved input has {x.shape[3]} channels, "
                                                     f"x_channels lists {len(x_channels)}")
    return [((len(channels), kh, kw, per_group), "float32")]


def _fc_grad_input(node: Node, ins: list[Tensor]) -> OutSpec:
    g, w = _error_in(node, ins, 2)
    _expect(len(g.shape) == 2 and len(w.shape) == 2 and g.shape[1] == w.shape[0], node,
            f"gradient {g.shape} does not match weight {w.shape}")
    return [((1, w.shape[1]), "float32")]


def _fc_grad_weight(node: Node, ins: list[Tensor]) -> OutSpec:
    g, x = _error_in(node, ins, 2)
    _expect(x.dtype == "int8" and len(x.shape) == 2, node, f"saved input {x.name!r} must be int8 [1, C]")
    channels = tuple(node.attrs["channels"])
    _expect(all(0 <= c < g.shape[1] for c in channels), node, "kept channel out of range")
    return [((len(channels), x.shape[1]), "float32")]


def _bias_grad(node: Node, ins: list[Tensor]) -> OutSpec:
    (g,) = _error_in(node, ins, 1)
    return [((g.shape[-1],), "float32")]


def _avg_pool_grad(node: Node, ins: list[Tensor]) -> OutSpec:
    _n_in(node, ins, 1)
    g = ins[0]
    _f32(node, g, "gradient")
    shape = tuple(node.attrs["input_shape"])
    _expect(len(g.shape) == 4 and g.shape[1:3] == (1, 1) and shape[3] == g.shape[3], node,
            f"gradient {g.shape} is not pooled from {shape}")
    return [(shape, "float32")]


def _grad_accumulate(node: Node, ins: list[Tensor]) -> OutSpec:
    _n_in(node, ins, 2)
    a, b = ins
    _f32(node, a, "a")
    _f32(node, b, "b")
    _expect(a.shape == b.shape, node, f"shapes differ: {a.shape} vs {b.shape}")
    return [(a.shape, "float32")]


def _slice_channels(node: Node, ins: list[Tensor]) -> OutSpec:
    _n_in(node, ins, 1)
    x = ins[0]
    channels = tuple(node.attrs["channels"])
    _expect(x.dtype == "int8" and all(0 <= c < x.shape[-1] for c in channels), node, "bad channel slice")
    return [(x.shape[:-1] + (len(channels),), "int8")]


def _update(dtype: str):
    def rule(node: Node, ins: list[Tensor]) -> OutSpec:
        _n_in(node, ins, 3)
        p, g, lr = ins
        _expect(p.dtype == dtype and p.is_const, node, f"parameter {p.name!r} must be a {dtype} constant")
        _f32(node, g, "gradient")
        _expect(lr.dtype == "float32" and lr.shape == (1,), node, "lr must be float32 [1]")
        channels = tuple(node.attrs["channels"])
        _expect(g.shape == (len(channels),) + p.shape[1:], node,
                f"gradient {g.shape} does not cover {len(channels)} channels of {p.shape}")
        _expect(len(node.attrs["factors"]) == p.shape[0], node, "one update factor per output channel")
        _expect(node.attrs.get("in_place") and node.outputs[0] == p.name, node, "updates must be in place")
        return [(p.shape, dtype)]
    return rule


TRAINING_SHAPE_RULES = {
    Op.LOSS_GRAD: _loss_grad,
    Op.MSE_GRAD: _mse_grad,
    Op.CLAMP_MASK: _clamp_mask,
    Op.MASK_GRAD: _mask_grad,
    Op.CONV2D_GRAD_INPUT: _conv_grad_input,
    Op.CONV2D_GRAD_WEIGHT: _conv_grad_weight,
    Op.FC_GRAD_INPUT: _fc_grad_input,
    Op.FC_GRAD_WEIGHT: _fc_grad_weight,
    Op.BIAS_GRAD: _bias_grad,
    Op.AVG_POOL_GRAD: _avg_pool_grad,
    Op.GRAD_ACCUMULATE: _grad_accumulate,
    Op.SLICE_CHANNELS: _slice_channels,
    Op.UPDATE_WEIGHT: _update("int8"),
    Op.UPDATE_BIAS: _update("int32"),
}
