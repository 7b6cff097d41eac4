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
from pathlib import Path

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


def load_model(spec: str | Path) -> Graph:
    spec = str(spec)
    if spec == "default":
        from microtrain.zoo.default_cnn import load_default_graph

        return load_default_graph()
    if spec in ZOO_NAMES:
        from microtrain.frontend.mcu_zoo import import_zoo_model

        return import_zoo_model(zoo_model_path(spec))
    path = Path(spec)
    if path.suffix == ".pkl":
        from microtrain.frontend.mcu_zoo import import_zoo_model

        if not path.exists():
            raise ModelNotFound(f"{path}: no such file")
        return import_zoo_model(path)
    if path.suffix in (".json", ".npz") or path.with_suffix(".json").exists():
        return load_graph(path)
    raise ModelNotFound(f"unknown model {spec!r}: give 'default', one of {', '.join(ZOO_NAMES)}, "
                        f"a zoo .pkl file or a microtrain .json model")
