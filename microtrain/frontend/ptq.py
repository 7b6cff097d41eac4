"""Post-training quantization of a FloatPlan: calibration, then the int8 Graph.

* Activations: per-tensor asymmetric int8 over the calibrated range (``minmax``: the
  observed min/max over all calibration samples; ``percentile``: the p-th / (100-p)-th
  percentile of a seeded subsample of values, for models with outliers), intersected with
  the op's folded activation (ReLU -> [0, inf), ReLU6 -> [0, 6]) and always containing 0.
  The folded activation becomes the op's ``act_min``/``act_max`` clamp in int8 units.
* Weights: symmetric per output channel (``quant.quantize_weights_per_channel``), OIHW ->
  OHWI; biases int32 in units s_x * s_w[c] (``quant.quantize_bias``).
* A Linear after a flatten of an NCHW map gets its input columns permuted, because the IR
  flattens NHWC: IR position (h*W + w)*C + c holds torch position c*H*W + h*W + w.
* A plan that carries its own quantization (``plan.given``, ``op.wq``/``op.bq``: PT2E, ONNX)
  keeps it: those scales, zero points, int8 weights and int32 biases are used as they are,
  and only values without them are calibrated (``needs_calibration``). A float bias is
  quantized in units s_x * s_w[c] of the given scales.
* Pooling, pad, concatenation and reshape keep their input's quantization (TFLite Micro's
  kernels move or pick int8 values). A concatenation's inputs must share one: the values that
  feed it (through such ops) are quantized together over the union of their ranges
  (``shared_quantization``). Where a model with its own quantization quantizes them differently
  but fixes the concatenation's (ONNX QDQ and QOperator do), each input is requantized to the
  concatenation's grid by the op that computes it: one rounding instead of the model's two (its
  own grid, then the concatenation's), as TFLite's converter does; otherwise it is an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from microtrain import quant
from microtrain.frontend.float_plan import SAME_QUANT, FloatOp, FloatPlan, UnsupportedError, run_float_plan
from microtrain.ir.graph import Graph, GraphBuilder, QParams, Tensor
from microtrain.ir.ops import Op
from microtrain.ir.verify import verify_graph

METHODS = ("minmax", "percentile")
_SAMPLES_PER_BATCH = 20000  # values kept per tensor per batch for percentiles


def calibrate(plan: FloatPlan, data: Any, method: str = "minmax", percentile: float = 99.99,
              batch_size: int = 64, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Real (lo, hi) range of the input and of every op output over ``data`` (NCHW float)."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    x_all = plan.as_plan_input(data)
    expected = plan.shapes[plan.input][1:]
    if tuple(x_all.shape[1:]) != expected:
        shown = expected if plan.input_rank != 3 else (expected[0], expected[2])
        raise ValueError(f"calibration data must be float [N, {', '.join(map(str, shown))}] (the model's input "
                         f"layout), got {list(np.shape(data))}")
    if len(x_all) == 0:
        raise ValueError("calibration data is empty")
    rng = np.random.default_rng(seed)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    samples: dict[str, list[np.ndarray]] = {}
    with torch.no_grad():
        for start in range(0, len(x_all), batch_size):
            x = x_all[start:start + batch_size]
            record = {plan.input: x}
            run_float_plan(plan, x, record, dtype=torch.float32)  # float32: fast kernels; ranges need no more
            for key, v in record.items():
                v = v.numpy().ravel()
                lo[key] = min(lo.get(key, np.inf), float(v.min()))
                hi[key] = max(hi.get(key, -np.inf), float(v.max()))
                if method == "percentile":
                    pick = v if v.size <= _SAMPLES_PER_BATCH else rng.choice(v, _SAMPLES_PER_BATCH, replace=False)
                    samples.setdefault(key, []).append(pick)
    if method == "minmax":
        return {k: (lo[k], hi[k]) for k in lo}
    out = {}
    for key, parts in samples.items():
        v = np.concatenate(parts)
        out[key] = (float(np.percentile(v, 100.0 - percentile)), float(np.percentile(v, percentile)))
    return out


def activation_qparams(rng: tuple[float, float], clamp: tuple[float, float]) -> tuple[float, int, int, int]:
    """(scale, zero point, act_min, act_max) for an output with range ``rng`` and clamp ``clamp``."""
    lo, hi = max(rng[0], clamp[0]), min(rng[1], clamp[1])
    scale, zero = quant.choose_activation_qparams(lo, hi)
    act_min = -128 if np.isinf(clamp[0]) else int(np.clip(zero + round(clamp[0] / scale), -128, 127))
    act_max = 127 if np.isinf(clamp[1]) else int(np.clip(zero + round(clamp[1] / scale), -128, 127))
    return scale, zero, act_min, act_max


def ir_shape(torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(torch_shape) == 4:
        n, c, h, w = torch_shape
        return (1, h, w, c)
    return (1,) + tuple(torch_shape[1:])


def nhwc_flat_order(c: int, h: int, w: int) -> np.ndarray:
    """torch flat index for each IR (NHWC) flat position."""
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()


def needs_calibration(plan: FloatPlan) -> bool:
    """True unless the source fixed the quantization of the input and of every op output."""
    return not plan.prequantized


def quantize_plan(plan: FloatPlan, ranges: Mapping[str, tuple[float, float]],
                  input_quant: tuple[float, int] | None = None, meta: dict | None = None) -> Graph:
    """Quantize every op of ``plan`` with its given quantization, else the calibrated ``ranges``;
    returns a verified Graph."""
    plan = dataclasses.replace(plan, given={**plan.given, **shared_quantization(plan, ranges)})
    b = GraphBuilder()
    in_q = plan.given.get(plan.input) or input_quant or quant.choose_activation_qparams(*_range(plan, ranges,
                                                                                                 plan.input))
    names = {plan.input: b.add_input(Tensor("input", ir_shape(plan.shapes[plan.input]), "int8",
                                            QParams.per_tensor(*in_q)))}
    for op in plan.ops:
        names[op.output] = QUANTIZE_RULES[op.kind](b, op, plan, ranges, names)
    return verify_graph(b.build([names[plan.output]], meta))


def shared_quantization(plan: FloatPlan, ranges: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, int]]:
    """(scale, zero point) for each value that feeds a concatenation (through ops that keep the
    quantization): one per group, over the union of the group's calibrated ranges, or the
    model's own if it gave one."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent.get(k, k) != k:
            k = parent[k]
        return k

    producer = {op.output: op for op in plan.ops}
    for op in plan.ops:
        if op.kind in SAME_QUANT:
            for k in op.inputs:
                parent[find(k)] = find(op.output)
    groups: dict[str, list[str]] = {}
    for k in {plan.input, *producer}:
        groups.setdefault(find(k), []).append(k)
    out: dict[str, tuple[float, int]] = {}
    for members in groups.values():
        if not any(producer.get(k) is not None and producer[k].kind == "concat" for k in members):
            continue
        roots = sorted(k for k in members if k not in producer or producer[k].kind not in SAME_QUANT)
        given = {plan.given[k] for k in roots if k in plan.given}
        # the model's own quantization of the concatenation (or of a pool or pad in the group)
        fixed = {plan.given[k] for k in members if k in plan.given and k not in roots}
        input_kept = plan.input in roots and plan.input in plan.given and plan.given[plan.input] not in fixed
        if len(fixed) == 1 and not input_kept:
            given = set(fixed)  # each differing root is requantized to it once, by the op that computes it
        if len(given) > 1 or (fixed and given != fixed):
            raise UnsupportedError(f"the values {roots} are concatenated but the model quantizes them differently "
                                   f"({sorted(given | fixed)}); the int8 concatenation needs one scale and zero point")
        if given:
            q = given.pop()
        else:
            known = [ranges[k] for k in members if k in ranges]
            if not known:
                raise UnsupportedError(f"the concatenated values {roots} were not calibrated")
            q = quant.choose_activation_qparams(min(r[0] for r in known), max(r[1] for r in known))
        out.update({k: q for k in roots})
    return out


def _range(plan: FloatPlan, ranges: Mapping[str, tuple[float, float]], key: str) -> tuple[float, float]:
    if key not in ranges:
        raise UnsupportedError(f"value {key!r} has no quantization in the model and was not calibrated "
                               "(a partly quantized model: quantize every op, or give a float model)")
    return ranges[key]


def given_qparams(given: tuple[float, int], clamp: tuple[float, float]) -> tuple[float, int, int, int]:
    """(scale, zero point, act_min, act_max) for an output whose quantization the model fixed."""
    scale, zero = given
    act_min = -128 if np.isinf(clamp[0]) else int(np.clip(zero + round(clamp[0] / scale), -128, 127))
    act_max = 127 if np.isinf(clamp[1]) else int(np.clip(zero + round(clamp[1] / scale), -128, 127))
    return scale, zero, act_min, act_max


def _out(b: GraphBuilder, op: FloatOp, plan: FloatPlan,
         ranges: Mapping[str, tuple[float, float]]) -> tuple[str, int, int]:
    if op.output in plan.given:
        scale, zero, act_min, act_max = given_qparams(plan.given[op.output], op.clamp)
    else:
        scale, zero, act_min, act_max = activation_qparams(_range(plan, ranges, op.output), op.clamp)
    t = Tensor(f"{op.name}.out", ir_shape(plan.shapes[op.output]), "int8", QParams.per_tensor(scale, zero))
    return b.add_tensor(t), act_min, act_max


def _weights(b: GraphBuilder, op: FloatOp, w: np.ndarray, x: Tensor) -> tuple[str, str]:
    """int8 OHWI / OI weights (``w`` is the float or the given int8 array, already in IR layout)."""
    if op.wq is not None:
        wq, scales = w.astype(np.int8), np.asarray(op.w_scales, dtype=np.float64)
        units = np.abs(np.asarray(op.bias, np.float64)) / (x.quant.s * scales)
        if op.bq is None and not np.all(units <= quant.INT32_MAX):  # the model's own scales: no silent clamp
            c = int(np.argmax(np.where(np.isfinite(units), units, np.inf)))
            raise UnsupportedError(f"{op.name}: bias {float(op.bias[c]):.4g} of channel {c} is {units[c]:.3g} x "
                                   "(input scale x weight scale), outside int32: the model's weight scales are too "
                                   "small for its biases")
    else:
        wq, scales = quant.quantize_weights_per_channel(w, axis=0)
    bq = op.bq.astype(np.int32) if op.bq is not None else quant.quantize_bias(op.bias, x.quant.s, scales)
    wn = b.add_tensor(Tensor(f"{op.name}.weight", wq.shape, "int8", QParams.per_channel(scales, 0), wq))
    bn = b.add_tensor(Tensor(f"{op.name}.bias", bq.shape, "int32", None, bq))
    return wn, bn


def _conv(b, op, plan, ranges, names) -> str:
    x = b.tensors[names[op.inputs[0]]]
    w = op.weight if op.wq is None else op.wq
    wn, bn = _weights(b, op, w.transpose(0, 2, 3, 1), x)  # OIHW -> OHWI
    y, act_min, act_max = _out(b, op, plan, ranges)
    b.add_node(op.name, Op.CONV2D, [x.name, wn, bn], [y], stride=tuple(op.attrs["stride"]),
               padding=tuple(op.attrs["padding"]), groups=int(op.attrs["groups"]), act_min=act_min, act_max=act_max)
    return y


def _linear(b, op, plan, ranges, names) -> str:
    x = b.tensors[names[op.inputs[0]]]
    w = op.weight if op.wq is None else op.wq
    if op.inputs[0] in plan.flat_of:
        w = w[:, nhwc_flat_order(*plan.flat_of[op.inputs[0]])]
    wn, bn = _weights(b, op, w, x)
    y, act_min, act_max = _out(b, op, plan, ranges)
    b.add_node(op.name, Op.FULLY_CONNECTED, [x.name, wn, bn], [y], act_min=act_min, act_max=act_max)
    return y


def _add(b, op, plan, ranges, names) -> str:
    y, act_min, act_max = _out(b, op, plan, ranges)
    b.add_node(op.name, Op.ADD, [names[k] for k in op.inputs], [y], act_min=act_min, act_max=act_max)
    return y


def _pool(b, op, plan, ranges, names) -> str:
    y, _, _ = _out(b, op, plan, ranges)
    if op.attrs.get("keepdim", True):
        b.add_node(op.name, Op.GLOBAL_AVG_POOL, [names[op.inputs[0]]], [y])
        return y
    # a mean without keepdim: pool to [1,1,1,C], then reshape to [1,C] (same quantization)
    flat = b.tensors[y]
    pooled = b.add_tensor(Tensor(f"{op.name}.pooled", (1, 1, 1, flat.shape[-1]), "int8", flat.quant))
    b.add_node(op.name, Op.GLOBAL_AVG_POOL, [names[op.inputs[0]]], [pooled])
    b.add_node(f"{op.name}.flatten", Op.RESHAPE, [pooled], [y], shape=flat.shape)
    return y


def _reshape(b, op, plan, ranges, names) -> str:
    x = b.tensors[names[op.inputs[0]]]
    shape = (1, int(np.prod(x.shape[1:])))
    y = b.add_tensor(Tensor(f"{op.name}.out", shape, "int8", x.quant))
    b.add_node(op.name, Op.RESHAPE, [x.name], [y], shape=shape)
    return y


def _same_quant_out(b, op, plan, x: Tensor) -> str:
    """The output of an op that keeps its input's quantization (checked against the model's own)."""
    given = plan.given.get(op.output)
    if given is not None and (abs(given[0] - x.quant.s) > 1e-6 * x.quant.s or given[1] != x.quant.z):
        raise UnsupportedError(f"{op.kind} {op.name!r} changes the quantization ({(x.quant.s, x.quant.z)} -> "
                               f"{given}); the int8 {op.kind} keeps its input's scale and zero point")
    return b.add_tensor(Tensor(f"{op.name}.out", ir_shape(plan.shapes[op.output]), "int8", x.quant))


def _window(ir_op: Op):
    def rule(b, op, plan, ranges, names) -> str:
        x = b.tensors[names[op.inputs[0]]]
        y = _same_quant_out(b, op, plan, x)
        ph, pw = op.attrs["padding"]
        extra = {}
        if ir_op is Op.AVG_POOL2D and op.attrs["count_include_pad"] and (ph or pw):
            # torch averages real zeros in the padding: the zero point, placed by a PAD (AVG_POOL2D
            # sums int8 codes, so its own count_include_pad would add code 0, not real 0)
            shape = (1, x.shape[1] + 2 * ph, x.shape[2] + 2 * pw, x.shape[3])
            padded = b.add_tensor(Tensor(f"{op.name}.padded", shape, "int8", x.quant))
            b.add_node(f"{op.name}.pad", Op.PAD, [x.name], [padded], pads=((0, 0), (ph, ph), (pw, pw), (0, 0)),
                       pad_value=int(x.quant.z))
            x, ph, pw = b.tensors[padded], 0, 0
        b.add_node(op.name, ir_op, [x.name], [y], filter=tuple(op.attrs["filter"]), stride=tuple(op.attrs["stride"]),
                   padding=(ph, pw, ph, pw), **extra)
        return y
    return rule


def _pad(b, op, plan, ranges, names) -> str:
    x = b.tensors[names[op.inputs[0]]]
    y = _same_quant_out(b, op, plan, x)
    top, left, bottom, right = op.attrs["padding"]
    b.add_node(op.name, Op.PAD, [x.name], [y], pads=((0, 0), (top, bottom), (left, right), (0, 0)),
               pad_value=int(x.quant.z))  # the zero point: real 0, exactly
    return y


def _concat(b, op, plan, ranges, names) -> str:
    xs = [b.tensors[names[k]] for k in op.inputs]
    y = _same_quant_out(b, op, plan, xs[0])
    b.add_node(op.name, Op.CONCAT, [x.name for x in xs], [y], axis=int(op.attrs["axis"]))
    return y


QUANTIZE_RULES = {"conv": _conv, "linear": _linear, "add": _add, "pool": _pool, "reshape": _reshape,
                  "maxpool": _window(Op.MAX_POOL2D), "avgpool": _window(Op.AVG_POOL2D), "pad": _pad,
                  "concat": _concat}
