"""Resumable fine-tuning checkpoints: written atomically, read safely.

A checkpoint is ``torch.save({"signature": <JSON of the run's arguments>, "trainer":
Trainer.state_dict()})``. It is read with ``torch.load(weights_only=True)``, which rebuilds
tensors and plain containers only and never runs code from the file. Whatever is wrong with
a file found where a checkpoint should be (garbage, truncated, hostile, another layout, a
state that does not fit the model) is a ``CheckpointError`` naming the file and how to start
over; a checkpoint of another run is a ``CheckpointMismatch``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RESTART_HINT = "rerun with --restart to start over (or delete the file)"


class CheckpointError(ValueError):
    """The checkpoint file cannot be used; the message names it and says how to start over."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint belongs to a run with other arguments."""


def save_checkpoint(path: str | Path, trainer, signature: dict) -> None:
    import torch

    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save({"signature": json.dumps(signature, sort_keys=True), "trainer": trainer.state_dict()}, tmp)
    os.replace(tmp, path)  # atomic: an interruption never leaves a half-written checkpoint


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def read_checkpoint(path: str | Path, signature: dict) -> dict:
    """The trainer state saved in ``path`` for the run described by ``signature``."""
    import torch

    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged or hostile files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {_first_line(e)}); "
                              f"{RESTART_HINT}") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("signature"), str)
            and isinstance(saved.get("trainer"), dict)):
        raise CheckpointError(f"{path} is not a microtrain fine-tuning checkpoint (unexpected layout); {RESTART_HINT}")
    if saved["signature"] != json.dumps(signature, sort_keys=True):
        raise CheckpointMismatch(f"{path} belongs to another run ({saved['signature'][:300]}); rerun with the same "
                                 "arguments, another --out, or --restart")
    return saved["trainer"]


def restore(trainer, path: str | Path, signature: dict) -> None:
    """Load the checkpoint at ``path`` into ``trainer`` (CheckpointError when it does not fit)."""
    state = read_checkpoint(path, signature)
    try:
        trainer.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - a damaged state fails as KeyError, TypeError, RuntimeError, ...
        raise CheckpointError(f"{path} does not fit this run ({type(e).__name__}: {_first_line(e)}); "
                              f"{RESTART_HINT}") from None
