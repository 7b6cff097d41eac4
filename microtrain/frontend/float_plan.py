"""The FloatPlan: what every model importer (torch.fx, torch.export / .pt2, PT2E, ONNX)
lowers a model to before it becomes an int8 ``Graph`` (``frontend/ptq.py``).

Grammar::

    FloatPlan = (input, output, ops: [FloatOp], shapes: {value: torch shape},
                 flat_of: {value: (C, H, W)}, given: {value: (scale, zero point)})
    FloatOp   = (name, kind, inputs: [value], output: value, weight, bias, attrs, clamp,
                 wq, w_scales, bq)

Values are named by keys (the source graph's names). Layout is torch's: NCHW activations,
OIHW / OI weights. A 1-D signal [N, C, L] (Conv1d) is held as [N, C, 1, L]: a Conv1d is a
conv2d of height 1, so the IR needs no 1-D ops. Kinds and what they compute:

  conv     conv2d(x, weight, bias), attrs stride, padding=(top, left, bottom, right), groups
  linear   x @ weight.T + bias on [N, features]
  add      a + b (same shape)
  pool     mean over H and W: [N, C, 1, 1], or [N, C] with attrs keepdim=False
  reshape  flatten [N, C, H, W] -> [N, C*H*W] (``flat_of`` records the source (C, H, W))
  maxpool  max over windows, attrs filter=(kh, kw), stride, padding=(ph, pw) (torch's: -inf pads)
  avgpool  mean over windows, the same attrs + count_include_pad (torch's meaning)
  pad      zeros around H and W, attrs padding=(top, left, bottom, right)
  concat   the inputs side by side along attrs dim (of the plan's layout)

maxpool, avgpool, pad, concat and reshape move or pick values: their int8 output keeps the
quantization of their input(s) (``SAME_QUANT``; a concat's inputs share one).

``clamp`` is a folded activation (ReLU, ReLU6, Hardtanh, clamp) in real units. A model that
carries its own int8 quantization (PT2E, ONNX QDQ / QOperator) also fills ``given`` (the
per-tensor int8 scale and zero point of a value, uint8 sources already shifted by -128)
and, per weighted op, ``wq`` (its int8 weights, torch layout), ``w_scales`` (per output
channel) and ``bq`` (int32 bias in units s_x * s_w[c], if the source quantized it);
``weight``/``bias`` then hold the dequantized values, so ``run_float_plan`` evaluates the
model the int8 graph approximates in both cases.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

SAME_QUANT = frozenset({"reshape", "maxpool", "avgpool", "pad", "concat"})
"""Kinds whose int8 output keeps its input's quantization (the IR's SAME_QUANT_OPS)."""


class UnsupportedError(ValueError):
    """The model uses something the importer cannot express in the int8 IR."""


@dataclasses.dataclass
class FloatOp:
    """One op of the float plan, in torch layout (NCHW activations, OIHW weights)."""

    name: str
    kind: str  # conv | linear | add | pool | reshape | maxpool | avgpool | pad | concat
    inputs: list[str]  # value keys
    output: str  # value key (the source node whose value this op produces, after fusion)
    weight: np.ndarray | None = None  # float64
    bias: np.ndarray | None = None  # float64
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    clamp: tuple[float, float] = (-np.inf, np.inf)  # folded activation, real units
    wq: np.ndarray | None = None  # int8 weights given by the source (torch layout)
    w_scales: np.ndarray | None = None  # float64 [O], with wq
    bq: np.ndarray | None = None  # int32 bias given by the source, units s_x * s_w[c]


@dataclasses.dataclass
class FloatPlan:
    input: str
    output: str
    ops: list[FloatOp]
    shapes: dict[str, tuple[int, ...]]  # value key -> torch shape (batch 1; 1-D signals as [1, C, 1, L])
    flat_of: dict[str, tuple[int, int, int]]  # value key -> (C,H,W) for NHWC-ordered flattens
    given: dict[str, tuple[float, int]] = dataclasses.field(default_factory=dict)
    input_rank: int = 4  # rank of the model's own input: 4 image, 3 signal [N, C, L], 2 features

    @property
    def prequantized(self) -> bool:
        """True if the source fixed the quantization of the input and of every op output."""
        return all(k in self.given for k in [self.input] + [op.output for op in self.ops if op.kind not in SAME_QUANT])

    def as_plan_input(self, x: Any) -> torch.Tensor:
        """A batch in the model's own input layout -> the plan's (signals [N, C, L] -> [N, C, 1, L])."""
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        if self.input_rank == 3 and x.ndim == 3:
            x = x.unsqueeze(2)
        return x


def nhwc_to_model_input(x: np.ndarray, rank: int) -> np.ndarray:
    """Preprocessed images [N, H, W, C] -> the model's own input layout: NCHW for an image
    model; [N, C=W, L=H] for a signal model (image row t is frame t, its columns the
    features: the int8 bytes of the image are the IR input [1, 1, L, C] unchanged);
    [N, H*W*C] in HWC order for a features model."""
    if rank == 4:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if rank == 3:
        return np.ascontiguousarray(x[..., 0].transpose(0, 2, 1))
    return np.ascontiguousarray(x.reshape(len(x), -1))


def run_float_plan(plan: FloatPlan, x: torch.Tensor, record: dict[str, torch.Tensor] | None = None,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Evaluate the folded float plan (the model the int8 graph approximates), NCHW, in ``dtype``."""
    values = {plan.input: plan.as_plan_input(x).to(dtype)}
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
            y = ins[0].mean(dim=(2, 3), keepdim=op.attrs.get("keepdim", True))
        elif op.kind == "maxpool":
            y = F.max_pool2d(ins[0], op.attrs["filter"], op.attrs["stride"], op.attrs["padding"])
        elif op.kind == "avgpool":
            y = F.avg_pool2d(ins[0], op.attrs["filter"], op.attrs["stride"], op.attrs["padding"],
                             count_include_pad=op.attrs["count_include_pad"])
        elif op.kind == "pad":
            t, l, bt, r = op.attrs["padding"]
            y = F.pad(ins[0], (l, r, t, bt))
        elif op.kind == "concat":
            y = torch.cat(ins, dim=op.attrs["dim"])
        else:  # reshape
            y = ins[0].reshape(ins[0].shape[0], -1)
        if op.clamp != (-np.inf, np.inf):
            y = y.clamp(min=None if np.isinf(op.clamp[0]) else op.clamp[0],
                        max=None if np.isinf(op.clamp[1]) else op.clamp[1])
        values[op.output] = y
        if record is not None:
            record[op.output] = y
    return values[plan.output]
