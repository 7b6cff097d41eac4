"""The on-device update rule, written once in Python (its C twin is in ``runtime/``).

For a trained element w (int8 weight or int32 bias) of output channel c, with step
direction d (the fp32 gradient w.r.t. the *real* tensor for SGD, the momentum buffer for
SGD-M, see ``train/optim.py``) and the per-channel factor f_c (``update_factors``)::

    v = (float32)w - (lr * d) * f_c            # float32, in exactly this order, no FMA
    nearest:    w' = floor(v + 0.5)
    stochastic: w' = floor(v + u),  u = (mix(seed, step, tensor_id, i) >> 8) / 2^24
    w' saturated to [-127, 127] (weights) or the int32 range (biases)

``mix`` chains murmur3's fmix32: ``h = fmix32(seed ^ (tensor_id * 0x9E3779B9 mod 2^32));
h = fmix32(h ^ step); h = fmix32(h ^ i)``; i is the flat element index within the whole
tensor (also for sub-tensor updates), step the 0-based training step, tensor_id the index of
the tensor in ``scheme.trained_tensor_order``. Counter-based, so update order never matters.

f_c: QAS weight 1/s_w[c], bias 1/(s_w[c] s_x); without QAS weight s_w[c], bias s_w[c] s_x;
computed in float64 and cast once to float32 (compile-time constants).
"""

from __future__ import annotations

import numpy as np

from microtrain.ir.graph import Graph, Node
from microtrain.runtime import fmath

ROUNDINGS = ("nearest", "stochastic")
"""The rounding names, in the order of the C enum ``mt_rounding`` (MT_ROUND_NEAREST = 0, ...)."""
WEIGHT_RANGE = (-127, 127)
BIAS_RANGE = (-(2**31), 2**31 - 1)
_M32 = 0xFFFFFFFF


def fmix32(h: np.ndarray) -> np.ndarray:
    """murmur3 finalizer on uint32 values (computed in uint64, masked to 32 bits)."""
    h = np.asarray(h, dtype=np.uint64) & _M32
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h


def mix(seed: int, step: int, tensor_id: int, index: np.ndarray) -> np.ndarray:
    """The counter-based hash of the rule: uint32 per element index."""
    h = fmix32(np.uint64((seed ^ ((tensor_id * 0x9E3779B9) & _M32)) & _M32))
    h = fmix32(h ^ np.uint64(step & _M32))
    return fmix32(h ^ (np.asarray(index, dtype=np.uint64) & _M32))


def stochastic_offsets(seed: int, step: int, tensor_id: int, index: np.ndarray) -> np.ndarray:
    """u in [0, 1) as float32, exactly (h >> 8) / 2^24."""
    return ((mix(seed, step, tensor_id, index) >> 8).astype(np.float32) * np.float32(2.0**-24)).astype(np.float32)


def update_factors(s_w: np.ndarray, s_x: float, kind: str, qas: bool) -> np.ndarray:
    """Per-channel f_c (float32) for kind "weight" or "bias"."""
    s = np.asarray(s_w, dtype=np.float64) * (1.0 if kind == "weight" else float(s_x))
    return (1.0 / s if qas else s).astype(np.float32)


def apply_update(w: np.ndarray, direction: np.ndarray, lr: float, factors: np.ndarray, kind: str,
                 rounding: str = "nearest", seed: int = 0, step: int = 0, tensor_id: int = 0,
                 index: np.ndarray | None = None) -> np.ndarray:
    """New integer values of the elements ``w`` (int array) under the rule above.

    ``factors`` broadcasts against ``w`` (per output channel on axis 0). ``index`` is the flat
    element index of each element of ``w`` in its full tensor (default: 0..w.size-1).
    Returns the same dtype as ``w``.
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    w = np.asarray(w)
    step_f = (np.float32(lr) * np.asarray(direction, dtype=np.float32)).astype(np.float32)
    v = (w.astype(np.float32) - (step_f * np.asarray(factors, dtype=np.float32)).astype(np.float32)).astype(np.float32)
    if rounding == "nearest":
        r = fmath.floorf((v + np.float32(0.5)).astype(np.float32))
    else:
        if index is None:
            index = np.arange(w.size, dtype=np.int64).reshape(w.shape)
        u = stochastic_offsets(seed, step, tensor_id, index)
        r = fmath.floorf((v + u).astype(np.float32))
    lo, hi = WEIGHT_RANGE if kind == "weight" else BIAS_RANGE
    return np.clip(r.astype(np.float64), lo, hi).astype(w.dtype)


def accumulate_scale(k: int) -> np.float32:
    """1/K of gradient accumulation over K samples, a float32 division (mt_update_params.accum_scale)."""
    return np.float32(1.0) / np.float32(k)


def optimizer_direction(grad: np.ndarray, accum: np.ndarray | None = None, apply: bool = True, scale: float = 1.0,
                        momentum: np.ndarray | None = None, mu: float = 0.0) -> np.ndarray | None:
    """The optimizer state step of the update kernels (mt_update_params), element-wise; the
    buffers (float32 arrays shaped like ``grad``) are updated in place::

        accum:     a = accum + g;  not apply: accum = a, return None (no update on this sample)
                   apply: accum = 0, g = a * float32(scale)           (scale = 1/K)
        momentum:  m = float32(mu) * momentum + g;  momentum = m;  g = m

    Returns the direction that goes into ``apply_update``."""
    g = np.asarray(grad, dtype=np.float32)
    if accum is not None:
        a = (accum + g).astype(np.float32)
        if not apply:
            accum[...] = a
            return None
        accum[...] = 0.0
        g = (a * np.float32(scale)).astype(np.float32)
    if momentum is not None:
        m = ((np.float32(mu) * momentum).astype(np.float32) + g).astype(np.float32)
        momentum[...] = m
        g = m
    return g


def optimizer_state(update: Node, graph: Graph) -> dict[str, int]:
    """The optimizer state buffers of one UPDATE node: kind ("accum", "momentum") -> bytes (fp32,
    one per kept element: list entry j of the kept channels at row j)."""
    p = graph.tensors[update.inputs[0]]
    per_row = p.size // p.shape[0]
    n = len(update.attrs["channels"]) * per_row * 4
    out = {}
    if int(update.attrs.get("accumulate", 1)) > 1:
        out["accum"] = n
    if float(update.attrs.get("momentum", 0.0)) > 0:
        out["momentum"] = n
    return out
