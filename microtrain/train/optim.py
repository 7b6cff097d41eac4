"""Optimizers that update the int8 weights / int32 biases of a Simulator in place.

There is no float master copy: each step computes a direction from the fp32 gradient
w.r.t. the real tensor and applies ``rounding.apply_update`` to the integer codes of the
scheme's kept elements only (the kept output channels of a sub-tensor weight update).

* ``sgd``   direction = g,                          factor f_c (QAS or not)
* ``sgdm``  direction = m, m <- mu*m + g (fp32 buffer, zero at first; optimizer_direction), factor f_c
* ``adam``  direction = Adam(g * f_c) (bias-corrected m/(sqrt(v)+eps) of the int-unit
            gradient, which is G_Wq = s_w g without QAS, the QAS-scaled g / s_w with it),
            factor 1: the step is in integer units, as Adam on the int8 tensor would be.

``shadow=True`` is the paper's own simulation, kept only to compare against: a float32
copy in integer units takes the un-rounded update and the codes are its nearest rounding.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from microtrain.runtime.rounding import apply_update, optimizer_direction, update_factors
from microtrain.scheme import trained_tensor_order
from microtrain.sim.simulator import Simulator

KINDS = ("sgd", "sgdm", "adam")


@dataclasses.dataclass
class _Slot:
    layer: str
    kind: str  # "weight" | "bias"
    tensor_id: int
    rows: np.ndarray  # kept output channels
    index: np.ndarray  # flat element indices of the kept elements, shape [k, ...]
    factors: np.ndarray  # float32 f_c for the kept rows, broadcastable
    state: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class Int8Optimizer:
    def __init__(self, sim: Simulator, kind: str = "sgd", qas: bool = True, rounding: str = "nearest",
                 seed: int = 0, momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, shadow: bool = False) -> None:
        if kind not in KINDS:
            raise ValueError(f"optimizer kind must be one of {KINDS}, got {kind!r}")
        self.sim, self.kind, self.qas, self.rounding, self.seed = sim, kind, qas, rounding, seed
        self.momentum, self.betas, self.eps, self.shadow = momentum, betas, eps, shadow
        self.step_count = 0
        self.order = trained_tensor_order(sim.scheme, sim.graph)
        self.slots: list[_Slot] = []
        for tid, (layer, kind_) in enumerate(self.order):
            node = sim.graph.node(layer)
            x_t, w_t, _ = (sim.graph.tensors[n] for n in node.inputs)
            codes = self._codes(layer, kind_)
            if kind_ == "weight":
                rows = np.asarray(sim.scheme.weight_update(layer).channels, dtype=np.int64)
            else:
                rows = np.arange(codes.shape[0], dtype=np.int64)
            index = np.arange(codes.size, dtype=np.int64).reshape(codes.shape)[rows]
            f = update_factors(w_t.quant.scales(), x_t.quant.s, kind_, qas)[rows]
            slot = _Slot(layer, kind_, tid, rows, index, f.reshape((-1,) + (1,) * (codes.ndim - 1)))
            if shadow:
                slot.state["shadow"] = codes[rows].astype(np.float32)
            self.slots.append(slot)

    def _codes(self, layer: str, kind: str) -> np.ndarray:
        p = self.sim.params[layer]
        return (p.w_q if kind == "weight" else p.b_q).numpy()  # shares memory with the tensor

    def attach(self) -> None:
        """Create the fp32 gradient leaves for this step's forward pass."""
        self.sim.attach_grads(self.order)

    def _grad(self, slot: _Slot) -> np.ndarray:
        p = self.sim.params[slot.layer]
        leaf = p.w_real if slot.kind == "weight" else p.b_real
        if leaf is None or leaf.grad is None:
            return np.zeros(slot.index.shape, dtype=np.float32)
        return leaf.grad.detach().numpy()[slot.rows].astype(np.float32)

    def step(self, lr: float, scale: float = 1.0) -> None:
        """One update; the leaves' gradients are the sum over the accumulated micro-batches, used
        times ``scale`` (float32 1/K, as the device's accumulation buffer)."""
        for slot in self.slots:
            g = (self._grad(slot) * np.float32(scale)).astype(np.float32)
            factors = slot.factors
            if self.kind == "sgd":
                d = g
            elif self.kind == "sgdm":
                if "m" not in slot.state:
                    slot.state["m"] = np.zeros_like(g)
                d = optimizer_direction(g, momentum=slot.state["m"], mu=self.momentum)
            else:
                gq = (g * factors).astype(np.float32)
                b1, b2 = self.betas
                m = (np.float32(b1) * slot.state.get("m", np.zeros_like(gq)) + np.float32(1 - b1) * gq)
                v = (np.float32(b2) * slot.state.get("v", np.zeros_like(gq)) + np.float32(1 - b2) * gq * gq)
                slot.state["m"], slot.state["v"] = m.astype(np.float32), v.astype(np.float32)
                t = self.step_count + 1
                d = ((m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + self.eps)).astype(np.float32)
                factors = np.float32(1.0)
            codes = self._codes(slot.layer, slot.kind)
            if self.shadow:
                sh = (slot.state["shadow"] - (np.float32(lr) * d).astype(np.float32) * factors).astype(np.float32)
                lo, hi = (-127, 127) if slot.kind == "weight" else (-(2**31), 2**31 - 1)
                slot.state["shadow"] = np.clip(sh, lo, hi).astype(np.float32)
                codes[slot.rows] = np.clip(np.floor(slot.state["shadow"].astype(np.float64) + 0.5), lo, hi)
            else:
                codes[slot.rows] = apply_update(codes[slot.rows], d, lr, factors, slot.kind, self.rounding,
                                                self.seed, self.step_count, slot.tensor_id, slot.index)
        self.step_count += 1

    # --- checkpointing --------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step_count": self.step_count,
                "slots": [{k: torch.from_numpy(v.copy()) for k, v in s.state.items()} for s in self.slots]}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        for slot, st in zip(self.slots, state["slots"], strict=True):
            slot.state = {k: v.numpy().copy() for k, v in st.items()}
