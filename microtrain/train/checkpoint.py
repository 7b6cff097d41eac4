"""Resumable fine-tuning checkpoints: written atomically, read safely, checked for damage.

A checkpoint is ``torch.save({"format": FORMAT, "signature": <JSON of the run's arguments>,
"state": <bytes of torch.save(Trainer.state_dict())>, "sha256": <hex digest of signature and
state>})``. Both levels are read with ``torch.load(weights_only=True)``, which rebuilds tensors
and plain containers only and never runs code from the file. The digest is needed because
torch's zip reader does not check the archive's CRC-32: a flipped byte in a tensor would
otherwise resume a run from silently changed weights. Whatever is wrong with a file found
where a checkpoint should be (garbage, truncated, damaged, hostile, another layout, a state
that does not fit the model) is a ``CheckpointError`` naming the file and how to start over; a
checkpoint of another run is a ``CheckpointMismatch``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

FORMAT = "microtrain-checkpoint-2"

RESTART_HINT = "rerun with --restart to start over (or delete the file)"


class CheckpointError(ValueError):
    """The checkpoint file cannot be used; the message names it and says how to start over."""


class CheckpointMismatch(CheckpointError):
    """The checkpoint belongs to a run with other arguments."""


def save_checkpoint(path: str | Path, trainer, signature: dict) -> None:
    import torch

    path = Path(path)
    tmp = path.with_suffix(".tmp")
    buf = io.BytesIO()
    torch.save(trainer.state_dict(), buf)
    state, sig = buf.getvalue(), json.dumps(signature, sort_keys=True)
    torch.save({"format": FORMAT, "signature": sig, "state": state, "sha256": _digest(sig, state)}, tmp)
    os.replace(tmp, path)  # atomic: an interruption never leaves a half-written checkpoint


def _digest(signature: str, state: bytes) -> str:
    return hashlib.sha256(signature.encode() + b"\0" + state).hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def read_checkpoint(path: str | Path, signature: dict | None = None) -> dict:
    """The trainer state saved in ``path`` for the run described by ``signature`` (None: any run)."""

    path = Path(path)
    saved = _load(path, path.read_bytes() if path.is_file() else b"")
    if not (isinstance(saved, dict) and saved.get("format") == FORMAT and isinstance(saved.get("signature"), str)
            and isinstance(saved.get("state"), bytes) and isinstance(saved.get("sha256"), str)):
        raise CheckpointError(f"{path} is not a microtrain fine-tuning checkpoint of this version (unexpected "
                              f"layout); {RESTART_HINT}")
    if _digest(saved["signature"], saved["state"]) != saved["sha256"]:
        raise CheckpointError(f"{path} is damaged (its checksum does not match its contents); {RESTART_HINT}")
    if signature is not None and saved["signature"] != json.dumps(signature, sort_keys=True):
        raise CheckpointMismatch(f"{path} belongs to another run ({saved['signature'][:300]}); rerun with the same "
                                 "arguments, another --out, or --restart")
    state = _load(path, saved["state"])
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no trainer state; {RESTART_HINT}")
    return state


def _load(path: Path, data: bytes):
    import torch

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for damaged or hostile files
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {_first_line(e)}); "
                              f"{RESTART_HINT}") from None


def restore(trainer, path: str | Path, signature: dict) -> None:
    """Load the checkpoint at ``path`` into ``trainer`` (CheckpointError when it does not fit)."""
    state = read_checkpoint(path, signature)
    try:
        trainer.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - a damaged state fails as KeyError, TypeError, RuntimeError, ...
        raise CheckpointError(f"{path} does not fit this run ({type(e).__name__}: {_first_line(e)}); "
                              f"{RESTART_HINT}") from None
