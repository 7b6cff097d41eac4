"""Bring your own PyTorch model: an architecture from the user's code, weights from a file.

* ``load_arch("path/to/file.py:ClassName", args)`` or ``load_arch("package.module:factory",
  args)``: imports the file or module and calls the class or factory with the JSON
  ``args`` as keyword arguments. This RUNS THE USER'S CODE, exactly as ``python file.py``
  would (the file's folder is put first on ``sys.path`` so that it can import its
  neighbours); it is the one place microtrain executes code the user names, and only code,
  never a weights file.
* ``load_state_dict(path)``: ``.npz`` (``allow_pickle=False``), ``.pt``/``.pth``
  (``torch.load(weights_only=True)``) or ``.safetensors`` (the ``safetensors`` package: a
  header and raw tensors, nothing to unpickle). Never runs code from the file.
* ``load_weights(module, state, what)``: strict loading; a mismatch is one line naming the
  missing and unexpected keys and the shapes that differ.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_SUFFIXES = (".npz", ".pt", ".pth", ".safetensors")


class ModelLoadError(ValueError):
    """The architecture, its arguments or the weights file cannot be used (one line)."""


def parse_arch_args(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        args = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"--arch-args is not JSON ({e.msg} at character {e.pos}): {text!r}") from None
    if not isinstance(args, dict):
        raise ModelLoadError(f"--arch-args must be a JSON object of keyword arguments, got {text!r}")
    return args


def is_user_arch(spec: str) -> bool:
    return ":" in spec


def load_arch(spec: str, args: dict[str, Any] | None = None) -> nn.Module:
    """Build the user's module from ``FILE.py:Name`` or ``package.module:Name`` (see module doc)."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelLoadError(f"--arch {spec!r}: give FILE.py:ClassName or package.module:factory")
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ModelLoadError(f"--arch {spec!r}: no such file {path}")
        name = f"microtrain_user_{abs(hash(str(path.resolve())))}"
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module_spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = mod
        try:
            module_spec.loader.exec_module(mod)
        except Exception as e:
            raise ModelLoadError(f"--arch {spec!r}: running {path} failed: {type(e).__name__}: {e}") from None
    else:
        try:
            mod = importlib.import_module(target)
        except Exception as e:
            raise ModelLoadError(f"--arch {spec!r}: cannot import {target!r}: {type(e).__name__}: {e}") from None
    factory = getattr(mod, attr, None)
    if factory is None or not callable(factory):
        raise ModelLoadError(f"--arch {spec!r}: {target} defines no class or function {attr!r}")
    try:
        module = factory(**(args or {}))
    except Exception as e:
        raise ModelLoadError(f"--arch {spec!r}: {attr}(**{json.dumps(args or {})}) failed: "
                             f"{type(e).__name__}: {e}") from None
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"--arch {spec!r}: {attr}(...) returned {type(module).__name__}, not a torch.nn.Module")
    return module


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """name -> tensor from a weights file (see module doc); never runs code from the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such checkpoint file")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: torch.from_numpy(f[k]) for k in f.files}
        except (ValueError, OSError) as e:
            raise ModelLoadError(f"{path}: not a readable .npz state dict ({e})") from None
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelLoadError(f"{path}: not a readable .safetensors file ({e})") from None
    if path.suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for bad/hostile files
            raise ModelLoadError(f"{path}: torch.load(weights_only=True) refused it ({str(e).splitlines()[0]}); "
                                 "save a plain state dict (torch.save(model.state_dict(), ...))") from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ModelLoadError(f"{path}: expected a state dict (name -> tensor)")
        return {k.removeprefix("module."): v for k, v in obj.items()}
    raise ModelLoadError(f"{path}: unknown checkpoint type {path.suffix!r}; give one of "
                         f"{', '.join(CHECKPOINT_SUFFIXES)}")


def _shown(names: list[str], limit: int = 4) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> nn.Module:
    """``module.load_state_dict(state)``, strictly, with a one-line error naming every mismatch."""
    own = module.state_dict()
    optional = {k for k in own if k.endswith("num_batches_tracked")}
    missing = [k for k in own if k not in state and k not in optional]
    unexpected = [k for k in state if k not in own and not k.endswith("num_batches_tracked")]
    shapes = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = ([f"missing {_shown(missing)}"] if missing else []) + \
                ([f"unexpected {_shown(unexpected)}"] if unexpected else []) + \
                ([f"shape (checkpoint vs model) {_shown(shapes, 3)}"] if shapes else [])
        raise ModelLoadError(f"the checkpoint does not match {what}: {'; '.join(parts)}")
    module.load_state_dict({k: v for k, v in state.items()}, strict=False)
    return module.eval()
