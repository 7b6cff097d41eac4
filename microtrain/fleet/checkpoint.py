"""The server's round checkpoint: written atomically after every completed round.

``DIR/fleet_state.npz`` holds the last completed round, the global trained rows after it
(``a0..``), the server momentum of fedavgm (``m0..``, if any), the history of every round so
far (JSON) and the run's signature (JSON of everything that determines the result). It is
written to a temporary file, flushed to disk and renamed over the old one, so a server killed
at any instant leaves either the previous round's checkpoint or this one, never a torn file.
A restarted server with the same signature continues after the saved round; the rounds that
follow are pure functions of the saved state and the seed, so the final model is the one an
uninterrupted run would have reached. Read with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from microtrain.fleet.update import Manifest

STATE_FILE = "fleet_state.npz"


class CheckpointError(ValueError):
    """A checkpoint of another run, or one that does not fit the manifest."""


@dataclasses.dataclass
class ServerState:
    round: int
    arrays: list[np.ndarray]
    momentum: list[np.ndarray] | None
    history: list[dict]


def save_state(directory: str | Path, state: ServerState, signature: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_FILE
    tmp = directory / (STATE_FILE + ".tmp")
    blobs = {f"a{i}": a for i, a in enumerate(state.arrays)}
    if state.momentum is not None:
        blobs.update({f"m{i}": m for i, m in enumerate(state.momentum)})
    with open(tmp, "wb") as f:
        np.savez(f, round=np.int64(state.round), signature=np.array(json.dumps(signature, sort_keys=True)),
                 history=np.array(json.dumps(state.history)), **blobs)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself reaches the disk
    finally:
        os.close(fd)
    return path


def load_state(directory: str | Path, signature: dict, manifest: Manifest) -> ServerState | None:
    """The saved state of this run, None if there is none; CheckpointError if it is another run's."""
    path = Path(directory) / STATE_FILE
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            saved_sig = str(z["signature"])
            rnd = int(z["round"])
            history = json.loads(str(z["history"]))
            arrays = [z[f"a{i}"] for i in range(len(manifest.slices))]
            momentum = [z[f"m{i}"] for i in range(len(manifest.slices))] if "m0" in z.files else None
    except (OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable fleet checkpoint ({e}); delete it to start over") from None
    if saved_sig != json.dumps(signature, sort_keys=True):
        raise CheckpointError(f"{path} belongs to another fleet run ({saved_sig}); use the same settings, another "
                              "output folder, or delete it to start over")
    for s, a in zip(manifest.slices, arrays, strict=True):
        if tuple(a.shape) != s.shape or a.dtype != np.dtype(s.dtype):
            raise CheckpointError(f"{path}: {s.name} is {a.dtype} {list(a.shape)}, expected {s.dtype} {list(s.shape)}")
    return ServerState(rnd, arrays, momentum, history)
