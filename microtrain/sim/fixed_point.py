"""Torch twin of ``microtrain.quant``'s fixed-point requantization (int64 tensors).

The simulator must reproduce the interpreter bit for bit, so this file mirrors
``quant.saturating_rounding_doubling_high_mul``, ``quant.rounding_divide_by_pot`` and
``quant.requantize`` operation for operation, on int64 torch tensors (batched, any shape;
``multiplier``/``shift`` broadcast, e.g. per output channel on the last axis).
``tests/test_sim_fixed_point.py`` checks it against ``microtrain.quant`` on boundary values.
The multipliers themselves always come from ``quant.quantize_multiplier`` (compile time).
"""

from __future__ import annotations

import torch

from microtrain.quant import INT32_MAX, INT32_MIN


def _as_i64(x: torch.Tensor | int) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.int64)


def saturate_int32(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, INT32_MIN, INT32_MAX)


def saturating_rounding_doubling_high_mul(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    a, b = _as_i64(a), _as_i64(b)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b  # |a*b| <= 2^62: no int64 overflow
    nudge = torch.where(ab >= 0, _as_i64(1 << 30), _as_i64(1 - (1 << 30)))
    high = torch.div(ab + nudge, 1 << 31, rounding_mode="trunc")  # C division: toward zero
    return torch.where(overflow, _as_i64(INT32_MAX), high)


def rounding_divide_by_pot(x: torch.Tensor, exponent: torch.Tensor | int) -> torch.Tensor:
    x, exponent = _as_i64(x), _as_i64(exponent)
    mask = (torch.ones_like(exponent) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).to(torch.int64)
    return (x >> exponent) + (remainder > threshold).to(torch.int64)


def requantize(acc: torch.Tensor, multiplier: torch.Tensor | int, shift: torch.Tensor | int) -> torch.Tensor:
    """acc * M in fixed point, exactly as ``microtrain.quant.requantize``."""
    shift = _as_i64(shift)
    left = torch.clamp(shift, min=0)
    right = torch.clamp(-shift, min=0)
    shifted = saturate_int32(_as_i64(acc) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)
