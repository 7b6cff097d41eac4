"""Resolve a model argument (as the CLI verbs take it) to an int8 Graph.

A MODEL is one of:
  default              the built-in small CNN for 28x28 grayscale (quantized checkpoint)
  mcunet-5fps | mbv2-w0.35 | proxyless-w0.3
                       a pretrained MCU-zoo model from the shared models folder
                       ($MICROTRAIN_MODELS, else ../shared/models next to the project)
  path/to/file.pkl     an MCU-zoo file (loaded with the safe unpickler)
  path/to/model.json   a microtrain graph (.json + .npz side by side)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from microtrain.frontend.mcu_zoo import import_zoo_model
from microtrain.ir import Graph, load_graph

ZOO_NAMES = ("mcunet-5fps", "mbv2-w0.35", "proxyless-w0.3")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ModelNotFound(FileNotFoundError):
    pass


def shared_models_dir() -> Path:
    env = os.environ.get("MICROTRAIN_MODELS")
    if env:
        return Path(env)
    return PROJECT_ROOT.parent / "shared" / "models"


def zoo_model_path(name: str) -> Path:
    path = shared_models_dir() / f"{name}.pkl"
    if not path.exists():
        raise ModelNotFound(f"pretrained model {name!r} not found at {path}; set MICROTRAIN_MODELS to the "
                            f"folder holding {name}.pkl")
    return path


def _zoo_file(path: Path) -> Graph:
    if not path.exists():
        raise ModelNotFound(f"{path}: no such file")
    return import_zoo_model(path)


IMPORTERS: dict[str, Callable[[Path], Graph]] = {
    ".pkl": _zoo_file,     # an MCU-zoo checkpoint (frontend/mcu_zoo.py)
    ".json": load_graph,   # a microtrain model (model.json + model.npz)
    ".npz": load_graph,
}
"""Model file suffix -> the importer that turns the file into a verified int8 Graph. A new
format is one line here (and its importer in ``frontend/``)."""


def load_model(spec: str | Path) -> Graph:
    """'default', a zoo name, or a model file whose suffix ``IMPORTERS`` knows."""
    spec = str(spec)
    if spec == "default":
        from microtrain.zoo.default_cnn import load_default_graph  # deferred: torch

        return load_default_graph()
    if spec in ZOO_NAMES:
        return import_zoo_model(zoo_model_path(spec))
    path = Path(spec)
    if path.suffix in IMPORTERS:
        return IMPORTERS[path.suffix](path)
    if path.with_suffix(".json").exists():
        return load_graph(path)
    raise ModelNotFound(f"unknown model {spec!r}: give 'default', one of {', '.join(ZOO_NAMES)}, "
                        f"or a model file ({', '.join(sorted(IMPORTERS))})")
