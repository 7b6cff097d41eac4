"""The learning-rate schedule, written once in Python (C twin ``mt_learning_rate`` in
``runtime/src/update/``): the simulator and the generated training step follow the same
float32 rates bit for bit.

``constant``: ``base`` at every update. ``cosine``: linear warm-up over ``warmup`` updates, then
a cosine decay to 0 at update ``total``::

    t < warmup:       base * ((float)(t + 1) / (float)warmup)
    total <= warmup:  base   (no length known: warm-up, then constant)
    otherwise:        base * (0.5 * (1 + cos_pi((t - warmup) / (total - warmup))))

every operation in float32, ``cos_pi`` the device's (``runtime/fmath.py``).
"""

from __future__ import annotations

import numpy as np

from microtrain.runtime import fmath

F32 = np.float32
KINDS = {"constant": 0, "cosine": 1}
"""Schedule name -> mt_lr_kind."""


def learning_rate(kind: str, base: float, t: int, warmup: int = 0, total: int = 0) -> float:
    """The float32 learning rate of update t (returned as a Python float holding that float32)."""
    if kind not in KINDS:
        raise ValueError(f"learning-rate schedule must be one of {', '.join(KINDS)}, got {kind!r}")
    b = F32(base)
    if kind == "constant":
        return float(b)
    if t < warmup:
        return float(F32(b * F32(F32(t + 1) / F32(warmup))))
    if total <= warmup:
        return float(b)
    u = F32(F32(t - warmup) / F32(total - warmup))
    return float(F32(b * F32(F32(0.5) * F32(F32(1.0) + fmath.cos_pi(u)))))
