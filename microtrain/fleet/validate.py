"""The server's check of every update before it may count: a device is not trusted.

``check_update(manifest, arrays, meta, round, max_examples)`` returns the arrays in the
manifest's exact dtypes, or raises ``UpdateRejected`` whose message names the first problem
found, in this order:

  diverged   the device reports that its divergence watch stopped its training (it sends no
             tensors: the step, the watch's reason and the learning rate, and the rejection
             says to lower the learning rate)
  manifest   the update was made for another model or scheme (fingerprint differs)
  round      it derives from another round than the one in progress (stale or replayed)
  examples   its sample count is not an integer in [1, max_examples] (an inflated count
             would let one device outweigh the fleet in FedAvg)
  count      wrong number of tensors
  shape      a tensor's shape differs from the manifest's kept rows
  finite     a tensor holds NaN or infinity
  range      a value lies outside the device type's range (int8 [-128, 127], int32)
  integral   a value is not an integer
  dtype      a tensor's dtype is not the device's (int8 weights, int32 biases)

Values are checked before the dtype so that the message says what is wrong with them (a
float tensor of NaNs is "non-finite", not just "float32"); an update with an exotic dtype
(object, string, complex) is rejected as such before any arithmetic touches it.
"""

from __future__ import annotations

import numpy as np

from microtrain.fleet.update import Manifest

RANGES = {"int8": (-128, 127), "int32": (-(2**31), 2**31 - 1)}


class UpdateRejected(ValueError):
    """An update the server will not aggregate; the message is the logged reason."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"{check}: {detail}")
        self.check = check


def check_meta(manifest: Manifest, meta: dict, round_: int, max_examples: int) -> int:
    """Check the update's metadata; returns its sample count."""
    step = meta.get("diverged")
    if step is not None:
        from microtrain.train.divergence import advice

        lr = meta.get("lr")
        hint = advice(float(lr)) if isinstance(lr, (int, float)) and not isinstance(lr, bool) else "lower the lr"
        raise UpdateRejected("diverged", f"its training diverged at step {step} of round {round_} "
                                         f"({meta.get('reason', '?')}: {meta.get('detail', '')}); {hint}")
    fp = meta.get("manifest")
    if fp != manifest.fingerprint:
        raise UpdateRejected("manifest", f"made for manifest {fp!r}, the fleet trains {manifest.fingerprint!r} "
                                         "(another model or scheme)")
    r = meta.get("round")
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or int(r) != round_:
        raise UpdateRejected("round", f"derives from round {r!r}, the server is in round {round_}")
    n = meta.get("examples")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= int(n) <= max_examples:
        raise UpdateRejected("examples", f"claims {n!r} samples, allowed 1..{max_examples} (the round's local steps)")
    return int(n)


def check_arrays(manifest: Manifest, arrays: list) -> list[np.ndarray]:
    if len(arrays) != len(manifest.slices):
        names = ", ".join(s.name for s in manifest.slices)
        raise UpdateRejected("count", f"{len(arrays)} tensors, the fleet trains {len(manifest.slices)} ({names})")
    out = []
    for s, a in zip(manifest.slices, arrays, strict=True):
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
            kind = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
            raise UpdateRejected("dtype", f"{s.name}: {kind} is not a numeric array (expected {s.dtype})")
        if tuple(a.shape) != s.shape:
            raise UpdateRejected("shape", f"{s.name}: shape {list(a.shape)}, expected {list(s.shape)} "
                                          f"({len(s.rows)} kept rows)")
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a)
            if bad.any():
                raise UpdateRejected("finite", f"{s.name}: {int(np.isnan(a).sum())} NaN and "
                                               f"{int(np.isinf(a).sum())} infinite values")
        lo, hi = RANGES[s.dtype]
        if a.size and (a.min() < lo or a.max() > hi):
            raise UpdateRejected("range", f"{s.name}: values in [{a.min()}, {a.max()}], outside the {s.dtype} "
                                          f"range [{lo}, {hi}]")
        if a.dtype.kind == "f" and np.any(a != np.round(a)):
            raise UpdateRejected("integral", f"{s.name}: values that are not integers (a device sends integer codes)")
        if a.dtype != np.dtype(s.dtype):
            raise UpdateRejected("dtype", f"{s.name}: dtype {a.dtype}, the device stores {s.dtype}")
        out.append(a)
    return out


def check_update(manifest: Manifest, arrays: list, meta: dict, round_: int, max_examples: int
                 ) -> tuple[list[np.ndarray], int]:
    """(arrays, sample count) of an acceptable update; raises UpdateRejected otherwise."""
    n = check_meta(manifest, meta, round_, max_examples)
    return check_arrays(manifest, arrays), n
