"""Misbehaving devices on purpose: what the server must survive, injected by device and round.

A fault is ``"DEVICE:KIND@ROUND"`` (``"3:nan@2"``: device 3 sends NaNs in round 2). Kinds:

  drop       the device fails mid-round and sends nothing (it disconnects)
  nan        a weight tensor arrives as float32 with NaN and infinity in it
  range      a weight tensor arrives as int32 with values far outside int8
  shape      a tensor arrives with one kept row missing
  set        a tensor is missing from the update (the wrong tensor set)
  manifest   the update names another model/scheme's manifest
  stale      the update says it derives from the previous round
  examples   the update claims 10^9 samples (it would outweigh the fleet in FedAvg)
  diverge    the device trains the round at ``DIVERGE_LR_FACTOR`` times the fleet's learning rate
             (a misconfigured device): its divergence watch stops it (``train/divergence.py``; on a
             firmware device the driver's C twin) and it reports the divergence instead of an update

Each but ``diverge`` changes an honest update after the device trained, so the server sees
exactly one thing wrong; ``validate.py`` must reject all but ``drop`` with the matching check.
"""

from __future__ import annotations

import dataclasses

import numpy as np

KINDS = ("drop", "nan", "range", "shape", "set", "manifest", "stale", "examples", "diverge")
CHECK_OF = {"nan": "finite", "range": "range", "shape": "shape", "set": "count", "manifest": "manifest",
            "stale": "round", "examples": "examples", "diverge": "diverged"}
DIVERGE_LR_FACTOR = 1000.0  # at 1000x lr the default CNN's saturated int8 logits trip the watch within 32 steps


class DeviceDropout(RuntimeError):
    """Raised by a device that drops out mid-round (fault ``drop``)."""


@dataclasses.dataclass(frozen=True)
class Fault:
    device: int
    kind: str
    round: int

    @staticmethod
    def parse(text: str) -> Fault:
        try:
            device, rest = text.split(":", 1)
            kind, rnd = rest.split("@", 1)
            fault = Fault(int(device), kind.strip(), int(rnd))
        except ValueError:
            raise ValueError(f"fault {text!r}: expected DEVICE:KIND@ROUND, e.g. 3:nan@2") from None
        if fault.kind not in KINDS:
            raise ValueError(f"fault {text!r}: unknown kind {fault.kind!r}; choose from {', '.join(KINDS)}")
        return fault


def faults_for(specs: tuple[str, ...], device: int) -> dict[int, str]:
    """round -> fault kind, for one device."""
    out = {}
    for f in map(Fault.parse, specs):
        if f.device == device:
            out[f.round] = f.kind
    return out


def round_lr(kind: str | None, lr: float) -> float:
    """The learning rate a device trains the round at (fault ``diverge``: far too high)."""
    return lr * DIVERGE_LR_FACTOR if kind == "diverge" else lr


def apply_fault(kind: str, arrays: list[np.ndarray], examples: int, meta: dict) -> tuple[list, int, dict]:
    """The honest update (arrays, sample count, metadata) turned into the faulty one (``diverge`` acts
    on the training itself, ``round_lr``, and leaves an update it did not stop unchanged)."""
    arrays, meta = list(arrays), dict(meta)
    if kind == "drop":
        raise DeviceDropout(f"device {meta.get('device')} dropped out in round {meta.get('round')} (fault injection)")
    if kind == "nan":
        bad = arrays[0].astype(np.float32)
        bad.reshape(-1)[0], bad.reshape(-1)[-1] = np.nan, np.inf
        arrays[0] = bad
    elif kind == "range":
        arrays[0] = arrays[0].astype(np.int32) * 1000 + 5000
    elif kind == "shape":
        arrays[0] = arrays[0][:-1]
    elif kind == "set":
        arrays = arrays[:-1]
    elif kind == "manifest":
        meta["manifest"] = "0" * 16
    elif kind == "stale":
        meta["round"] = int(meta["round"]) - 1
    elif kind == "examples":
        examples = 10**9
    return arrays, examples, meta
