"""The int8/int16 error tensors of the quantized backward, written once (``--grad-dtype``).

With ``grad_dtype`` int8 or int16 the *error* of every conv / fully-connected layer (the
gradient w.r.t. its output after the clamp mask, ``MASK_GRAD`` in a compiled graph) is held
as integer codes q with one power-of-two scale 2^e per tensor (per sample at batch 1; the
simulator's batches quantize each sample on its own), as in integer-only training (NITI)::

    m = max |d|                                  (float32, the whole tensor)
    e = frexp(m).exponent - (B - 1)              (m = f 2^k, f in [0.5, 1): e = k - B + 1)
    q = clamp(rint(d * 2^-e), -Q, Q)             Q = 2^(B-1) - 1; rint rounds half to even
    d^ = q * 2^e                                 (exact in float32: |q| < 2^15)

B = 8 or 16 bits. The largest |d| lands in [2^(B-2), 2^(B-1)] codes, the full range; only a
value rounding to 2^(B-1) is clipped, by less than one code. A tensor with m = 0, m < 2^-100
or m not finite quantizes to all zeros (the divergence watch stops a step whose loss is not
finite before that matters). The scaling by 2^-e is exact, so rint is the only rounding.

The consumers of the error, in a compiled graph the nodes with attribute ``error_bits`` = B:

* weight gradient: ``acc = sum d^ * (x_q - z_x)`` exactly (it is 2^e times an integer: int32
  codes x int8 activation, accumulated in int64 on the device), then ``float32(acc) * s_x``
  (float32). The fp32 backward instead sums ``d * (x_q - z_x)`` in float32;
* bias gradient: ``float32(sum d^)``, the integer sum of the codes times 2^e;
* input gradient (the error sent to the previous layer): the fp32 kernel, reading d^.

So the error tensor is 1 (int8) or 2 (int16) bytes per element instead of 4, and the
gradient of a weight is the exact integer product sum, rounded once. ``exact_f32`` is the one
rounding of an exact float64 sum to float32 (round to nearest even, as C's int64 -> float).
"""

from __future__ import annotations

import numpy as np

GRAD_DTYPES = {"fp32": 0, "int16": 16, "int8": 8}
"""``--grad-dtype`` name -> bits B of the error codes (0: fp32 errors, the default)."""
TINY = 2.0 ** -100
"""Errors whose max |d| is below this quantize to zero (keeps 2^e a normal float32)."""


def error_bits(grad_dtype: str) -> int:
    if grad_dtype not in GRAD_DTYPES:
        raise ValueError(f"grad dtype {grad_dtype!r} is not one of {', '.join(GRAD_DTYPES)}")
    return GRAD_DTYPES[grad_dtype]


def quantize_error(d: np.ndarray, bits: int, batched: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(q int32 codes, e int32 exponents) of float32 errors ``d``; one exponent for the whole
    tensor, or with ``batched`` one per leading-axis sample (shape [N])."""
    d = np.asarray(d, dtype=np.float32)
    flat = d.reshape(d.shape[0], -1) if batched else d.reshape(1, -1)
    m = np.abs(flat).max(axis=1) if flat.shape[1] else np.zeros(flat.shape[0], np.float32)
    ok = np.isfinite(m) & (m >= TINY)
    _, k = np.frexp(np.where(ok, m, 1.0).astype(np.float64))
    e = np.where(ok, k - (bits - 1), 0).astype(np.int32)
    qmax = 2 ** (bits - 1) - 1
    scaled = np.ldexp(flat.astype(np.float64), -e[:, None])  # exact: a power-of-two scaling
    q = np.clip(np.rint(np.where(np.isfinite(scaled), scaled, 0.0)), -qmax, qmax)
    q = np.where(ok[:, None], q, 0.0).astype(np.int32)
    return q.reshape(d.shape), (e if batched else e.reshape(()))


def dequantize_error(q: np.ndarray, e: np.ndarray, batched: bool = False) -> np.ndarray:
    """d^ = q * 2^e as float32 (exact)."""
    q = np.asarray(q)
    e = np.asarray(e).reshape((-1,) + (1,) * (q.ndim - 1)) if batched else np.asarray(e)
    return np.ldexp(q.astype(np.float64), e).astype(np.float32)


def fake_quantize_error(d: np.ndarray, bits: int, batched: bool = False) -> np.ndarray:
    """The error the consumers read, d^ (float32); ``bits`` 0 returns ``d`` unchanged."""
    if not bits:
        return np.asarray(d, dtype=np.float32)
    q, e = quantize_error(d, bits, batched)
    return dequantize_error(q, e, batched)


def exact_f32(acc: np.ndarray) -> np.ndarray:
    """An exactly accumulated sum (float64 holding 2^e times an integer) rounded once to float32."""
    return np.asarray(acc, dtype=np.float64).astype(np.float32)


__all__ = ["GRAD_DTYPES", "error_bits", "quantize_error", "dequantize_error", "fake_quantize_error", "exact_f32"]
