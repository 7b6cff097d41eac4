"""Aggregation of the accepted updates of a round, in real units, and requantization.

Every rule takes the devices' trained rows as float64 real values (``Manifest.to_real``),
their sample counts and the round's global values, and returns the new global values:

  fedavg         sum_i n_i x_i / sum_i n_i                         (McMahan et al. 2017)
  fedavgm        FedAvg, then server momentum on the pseudo-gradient (Hsu et al. 2019):
                 d = g - fedavg, m <- beta m + d, g' = g - eta m   (m kept in the checkpoint)
  fedmedian      coordinate-wise median (unweighted)                (Yin et al. 2018)
  trimmed-mean   coordinate-wise mean after dropping the floor(beta n) largest and smallest
                 values of each coordinate (unweighted)             (Yin et al. 2018)

The result is requantized on the unchanged scales with the device's rounding rule
(``train/rounding.py``): nearest ``floor(v + 0.5)`` or stochastic ``floor(v + u)`` with
``u = stochastic_offsets(server_seed, round, tensor_id, element)``, then saturated as the
device saturates (weights [-127, 127], biases int32). Stochastic rounding keeps the average of
many small moves: ten devices that each move a weight by +1 three times in ten would
otherwise round their mean 0.3 back to no move at all.

Updates are ordered by device id before any sum, so the result does not depend on the order in
which replies arrived.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from microtrain.fleet.update import Manifest
from microtrain.runtime.rounding import BIAS_RANGE, ROUNDINGS, WEIGHT_RANGE, stochastic_offsets

RULES = ("fedavg", "fedavgm", "fedmedian", "trimmed-mean")


@dataclasses.dataclass(frozen=True)
class AggregateConfig:
    rule: str = "fedavg"
    server_lr: float = 1.0  # fedavgm: eta
    server_momentum: float = 0.9  # fedavgm: beta
    trim: float = 0.2  # trimmed-mean: fraction cut at each end

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown aggregation rule {self.rule!r}; choose from {', '.join(RULES)}")
        if not 0.0 <= self.trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5), got {self.trim}")


def _weighted_mean(stack: np.ndarray, weights: np.ndarray) -> np.ndarray:
    w = weights.reshape((-1,) + (1,) * (stack.ndim - 1))
    return (stack * w).sum(axis=0) / weights.sum()


def _trimmed_mean(stack: np.ndarray, trim: float) -> np.ndarray:
    n = stack.shape[0]
    k = int(np.floor(trim * n))
    return np.sort(stack, axis=0)[k:n - k].mean(axis=0)


def aggregate_real(cfg: AggregateConfig, updates: list[list[np.ndarray]], examples: list[int],
                   global_real: list[np.ndarray], momentum: list[np.ndarray] | None
                   ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """New global real values (and the new server momentum for fedavgm) from >= 1 update."""
    if not updates:
        raise ValueError("nothing to aggregate")
    weights = np.asarray(examples, dtype=np.float64)
    out, new_m = [], []
    for i, g in enumerate(global_real):
        stack = np.stack([u[i] for u in updates])
        if cfg.rule in ("fedavg", "fedavgm"):
            x = _weighted_mean(stack, weights)
        elif cfg.rule == "fedmedian":
            x = np.median(stack, axis=0)
        else:
            x = _trimmed_mean(stack, cfg.trim)
        if cfg.rule == "fedavgm":
            m = g - x if momentum is None else cfg.server_momentum * momentum[i] + (g - x)
            new_m.append(m)
            x = g - cfg.server_lr * m
        out.append(x)
    return out, (new_m if cfg.rule == "fedavgm" else None)


def requantize(manifest: Manifest, real: list[np.ndarray], rounding: str, seed: int, round_: int
               ) -> list[np.ndarray]:
    """Real values -> the device's integer codes, with the device's rounding and saturation."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    out = []
    for i, (s, v) in enumerate(zip(manifest.slices, manifest.to_units(real), strict=True)):
        if rounding == "nearest":
            r = np.floor(v + 0.5)
        else:
            r = np.floor(v + stochastic_offsets(seed, round_, s.tensor_id, manifest.flat_index(i)).astype(np.float64))
        lo, hi = WEIGHT_RANGE if s.kind == "weight" else BIAS_RANGE
        out.append(np.clip(r, lo, hi).astype(s.dtype))
    return out
