"""The training losses as the device computes them, written once in Python (C twins in
``runtime/src/backward/``), batched over samples.

Every sample's value is the same sequence of float32 operations as the C kernel's (vectorised
only across samples and across elements that share no accumulator), with the device's
``mt_expf``/``mt_logf`` (``runtime/fmath.py``), so the loss bits and the logit gradients of
the simulator (``train/device_loss.py``), the reference interpreter and the generated C are
identical.
"""

from __future__ import annotations

import numpy as np

from microtrain.runtime import fmath

F32 = np.float32


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(loss [N], dlogits [N, K]) of mt_softmax_cross_entropy_f32 for float32 logits [N, K]:
    m = max; e_i = mt_expf(l_i - m); S = sum e_i (i ascending); loss = mt_logf(S) - (l_y - m);
    dlogits_i = e_i * (1 / S) - (i == y)."""
    z = np.asarray(logits, dtype=F32)
    n, k = z.shape
    labels = np.asarray(labels, dtype=np.int64)
    m = z.max(axis=1, keepdims=True)
    e = fmath.expf((z - m).astype(F32))
    s = np.zeros(n, dtype=F32)
    for i in range(k):  # sequential, ascending, as the C kernel
        s = (s + e[:, i]).astype(F32)
    rows = np.arange(n)
    loss = (fmath.logf(s) - (z[rows, labels] - m[:, 0]).astype(F32)).astype(F32)
    g = (e * (F32(1.0) / s).astype(F32)[:, None]).astype(F32)
    g[rows, labels] = (g[rows, labels] - F32(1.0)).astype(F32)
    return loss, g


def mean_squared_error(pred: np.ndarray, target_q: np.ndarray, scale: float, zero: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(loss [N], dpred [N, K]) of mt_mean_squared_error_f32 for float32 predictions [N, K] and int8
    targets [N, K] (dequantized as (float)(q - z) * float32(scale)): d_i = p_i - t_i;
    S = sum d_i * d_i (i ascending, from 0); loss = S * (1.0f / K); dpred_i = d_i * (2.0f / K)."""
    p = np.asarray(pred, dtype=F32)
    n, k = p.shape
    t = (np.asarray(target_q).reshape(n, k).astype(np.int32) - np.int32(zero)).astype(F32) * F32(scale)
    d = (p - t.astype(F32)).astype(F32)
    s = np.zeros(n, dtype=F32)
    for i in range(k):  # sequential, ascending, as the C kernel
        s = (s + (d[:, i] * d[:, i]).astype(F32)).astype(F32)
    loss = (s * (F32(1.0) / F32(k))).astype(F32)
    return loss, (d * (F32(2.0) / F32(k))).astype(F32)
