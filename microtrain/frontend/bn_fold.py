"""Fold an inference-mode BatchNorm2d into the convolution that precedes it.

BN(conv(x)) = gamma * (W*x + b - mean) / sqrt(var + eps) + beta, so with
k_c = gamma_c / sqrt(var_c + eps):  W'_c = k_c * W_c,  b'_c = k_c * (b_c - mean_c) + beta_c.
Exact in real arithmetic; computed in float64 so the folded float model matches the
original to float32 rounding.
"""

from __future__ import annotations

import numpy as np
from torch import nn


def bn_scale_shift(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """(k, beta - k*mean): BN as a per-channel affine map y = k*x + shift."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("BatchNorm2d without running statistics (track_running_stats=False) cannot be folded")
    mean = bn.running_mean.detach().double().numpy()
    var = bn.running_var.detach().double().numpy()
    gamma = bn.weight.detach().double().numpy() if bn.weight is not None else np.ones_like(mean)
    beta = bn.bias.detach().double().numpy() if bn.bias is not None else np.zeros_like(mean)
    k = gamma / np.sqrt(var + bn.eps)
    return k, beta - k * mean


def fold_batch_norm(weight: np.ndarray, bias: np.ndarray, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Folded (weight, bias) in float64; ``weight`` is [O, ...] (OIHW), ``bias`` [O]."""
    return _fold(weight, bias, *bn_scale_shift(bn))


def fold_bn_arrays(weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray,
                   gamma: np.ndarray | None, beta: np.ndarray | None, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The same fold from BatchNorm's arrays (an ATen ``batch_norm`` node's operands)."""
    gamma = np.ones_like(mean) if gamma is None else gamma
    beta = np.zeros_like(mean) if beta is None else beta
    k = gamma / np.sqrt(var + eps)
    return _fold(weight, bias, k, beta - k * mean)


def _fold(weight: np.ndarray, bias: np.ndarray, k: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if k.shape[0] != weight.shape[0]:
        raise ValueError(f"BatchNorm2d has {k.shape[0]} channels but the conv before it has {weight.shape[0]}")
    w = np.asarray(weight, dtype=np.float64) * k.reshape((-1,) + (1,) * (weight.ndim - 1))
    b = k * np.asarray(bias, dtype=np.float64) + shift
    return w, b
