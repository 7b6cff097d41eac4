"""Shape rules of the window and copy ops (pooling, PAD, CONCAT, SOFTMAX) and their gradients.

The ops of imported .tflite models beyond convolutions (meanings in ``ir/ops.py``, TFLite
Micro's int8 kernels as definitions); ``ir/registry.py`` lists these rules in
``SHAPE_RULES``. That the output keeps the input's quantization (all but SOFTMAX) is checked
by the verifier for every op of ``SAME_QUANT_OPS``.
"""

from __future__ import annotations

from microtrain.ir.check import OutSpec, arity, expect
from microtrain.ir.graph import Node, Tensor
from microtrain.ir.ops import Op


def _int8_act(node: Node, t: Tensor, role: str = "input") -> None:
    expect(t.dtype == "int8" and t.quant is not None and not t.quant.is_per_channel, node,
           f"{role} {t.name!r} must be an int8 activation with per-tensor quantization")


def pool_geometry(node: Node, in_shape: tuple[int, ...]) -> tuple[int, int]:
    """(out_h, out_w) of a pool node on an NHWC input; checks that every window meets the input."""
    expect(len(in_shape) == 4 and in_shape[0] == 1, node, f"input must be NHWC with batch 1, is {in_shape}")
    fh, fw = (int(v) for v in node.attrs["filter"])
    sh, sw = (int(v) for v in node.attrs.get("stride", (1, 1)))
    top, left, bottom, right = (int(v) for v in node.attrs.get("padding", (0, 0, 0, 0)))
    expect(min(fh, fw, sh, sw) >= 1 and min(top, left, bottom, right) >= 0, node,
           f"bad filter {fh}x{fw}, stride {sh}x{sw} or padding {node.attrs.get('padding')}")
    _, h, w, _ = in_shape
    oh, ow = (h + top + bottom - fh) // sh + 1, (w + left + right - fw) // sw + 1
    expect(oh >= 1 and ow >= 1, node, f"filter {fh}x{fw} larger than the padded input {h}x{w}")
    expect(top < fh and left < fw and (oh - 1) * sh - top < h and (ow - 1) * sw - left < w, node,
           f"a window of filter {fh}x{fw}, stride {sh}x{sw}, padding {(top, left, bottom, right)} misses the "
           f"{h}x{w} input")
    return oh, ow


def _pool(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 1)
    (x,) = ins
    _int8_act(node, x)
    oh, ow = pool_geometry(node, x.shape)
    lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
    expect(-128 <= lo <= hi <= 127, node, f"activation range [{lo}, {hi}] is not inside int8")
    return [((1, oh, ow, x.shape[3]), "int8")]


def _pad(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 1)
    (x,) = ins
    _int8_act(node, x)
    pads = tuple(tuple(int(v) for v in p) for p in node.attrs["pads"])
    expect(len(x.shape) == 4 and len(pads) == 4 and pads[0] == (0, 0) and all(len(p) == 2 and min(p) >= 0
                                                                            for p in pads), node,
           f"pads {pads} must be 4 non-negative (before, after) pairs, none on the batch of {x.shape}")
    expect(-128 <= int(node.attrs["pad_value"]) <= 127, node, f"pad_value {node.attrs['pad_value']} outside int8")
    return [(tuple(d + a + b for d, (a, b) in zip(x.shape, pads, strict=True)), "int8")]


def _concat(node: Node, ins: list[Tensor]) -> OutSpec:
    expect(len(ins) >= 1 and len(node.outputs) == 1, node, f"{len(ins)} inputs, {len(node.outputs)} outputs")
    for x in ins:
        _int8_act(node, x)
    rank = len(ins[0].shape)
    axis = int(node.attrs["axis"])
    expect(1 <= axis < rank, node, f"axis {axis} of rank-{rank} tensors (not the batch)")
    for x in ins:
        expect(len(x.shape) == rank and all(x.shape[d] == ins[0].shape[d] for d in range(rank) if d != axis), node,
               f"input {x.name!r} {x.shape} does not fit {ins[0].shape} outside axis {axis}")
    shape = list(ins[0].shape)
    shape[axis] = sum(x.shape[axis] for x in ins)
    return [(tuple(shape), "int8")]


def _softmax(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 1)
    (x,) = ins
    _int8_act(node, x)
    expect(float(node.attrs.get("beta", 1.0)) > 0, node, f"beta {node.attrs.get('beta')} must be > 0")
    return [(x.shape, "int8")]


def _f32_grad(node: Node, g: Tensor) -> None:
    expect(g.dtype == "float32", node, f"gradient {g.name!r} must be float32, is {g.dtype}")


def _pool_grad(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 2 if node.op is Op.MAX_POOL2D_GRAD else 1)
    g = ins[0]
    _f32_grad(node, g)
    shape = tuple(int(d) for d in node.attrs["input_shape"])
    oh, ow = pool_geometry(node, shape)
    expect(g.shape == (1, oh, ow, shape[3]), node, f"gradient {g.shape} is not the pool's output of {shape}")
    if node.op is Op.MAX_POOL2D_GRAD:
        expect(ins[1].dtype == "int8" and ins[1].shape == shape, node,
               f"saved input {ins[1].name!r} must be int8 {list(shape)}")
    return [(shape, "float32")]


def _pad_grad(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 1)
    (g,) = ins
    _f32_grad(node, g)
    pads = tuple(tuple(int(v) for v in p) for p in node.attrs["pads"])
    shape = tuple(d - a - b for d, (a, b) in zip(g.shape, pads, strict=True))
    expect(len(pads) == len(g.shape) and min(shape) >= 1, node, f"pads {pads} do not fit gradient {g.shape}")
    return [(shape, "float32")]


def _concat_grad(node: Node, ins: list[Tensor]) -> OutSpec:
    arity(node, ins, 1)
    (g,) = ins
    _f32_grad(node, g)
    axis, offset, size = (int(node.attrs[k]) for k in ("axis", "offset", "size"))
    expect(1 <= axis < len(g.shape) and offset >= 0 and size >= 1 and offset + size <= g.shape[axis], node,
           f"slice [{offset}, {offset + size}) of axis {axis} of {g.shape}")
    shape = list(g.shape)
    shape[axis] = size
    return [(tuple(shape), "float32")]


WINDOW_SHAPE_RULES = {
    Op.AVG_POOL2D: _pool,
    Op.MAX_POOL2D: _pool,
    Op.PAD: _pad,
    Op.CONCAT: _concat,
    Op.SOFTMAX: _softmax,
    Op.AVG_POOL2D_GRAD: _pool_grad,
    Op.MAX_POOL2D_GRAD: _pool_grad,
    Op.PAD_GRAD: _pad_grad,
    Op.CONCAT_GRAD: _concat_grad,
}
