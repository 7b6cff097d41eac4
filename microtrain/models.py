"""Resolve a model argument (as the CLI verbs take it) to an int8 Graph.

A MODEL is one of:
  default              the built-in small CNN for 28x28 grayscale (quantized checkpoint)
  mcunet-5fps | mbv2-w0.35 | proxyless-w0.3
                       a pretrained MCU-zoo model from the shared models folder
                       ($MICROTRAIN_MODELS, else ../shared/models next to the project)
  path/to/file.pkl     an MCU-zoo file (loaded with the safe unpickler)
  path/to/model.tflite an int8 TensorFlow Lite model (frontend/tflite.py; TFLM's arithmetic kept)
  path/to/model.onnx   an int8 ONNX model, QDQ or QOperator (frontend/onnx_import.py; its own quantization)
  path/to/model.pt2    a PT2E-quantized torch.export program (frontend/torch_export.py; its own quantization)
  path/to/model.json   a microtrain graph (.json + .npz side by side)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

from microtrain.frontend.mcu_zoo import import_zoo_model
from microtrain.frontend.tflite import import_tflite
from microtrain.ir import Graph, ModelFileError, load_graph, save_graph

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


def _int8_file(path: Path) -> Graph:
    """An int8 .onnx or PT2E .pt2 (``frontend/byom.py``); its import errors as ``ModelFileError``."""
    from microtrain.frontend.byom import import_int8_file  # deferred: torch, onnx

    if not path.is_file():
        raise ModelNotFound(f"{path}: no such file")
    try:
        return import_int8_file(path)
    except ValueError as e:  # ModelLoadError, UnsupportedError, IRError: one line naming what and where
        raise ModelFileError(str(e)) from None


IMPORTERS: dict[str, Callable[[Path], Graph]] = {
    ".pkl": _zoo_file,     # an MCU-zoo checkpoint (frontend/mcu_zoo.py)
    ".tflite": import_tflite,  # an int8 TensorFlow Lite flatbuffer (frontend/tflite.py)
    ".onnx": _int8_file,   # an int8 ONNX model, QDQ or QOperator (frontend/onnx_import.py)
    ".pt2": _int8_file,    # a PT2E-quantized torch.export program (frontend/torch_export.py)
    ".json": load_graph,   # a microtrain model (model.json + model.npz)
    ".npz": load_graph,
}
"""Model file suffix -> the importer that turns the file into a verified int8 Graph. A new
format is one line here (and its importer in ``frontend/``)."""


def _save_tflite(graph: Graph, path: Path) -> Path:
    from microtrain.frontend.tflite_export import save_tflite

    return save_tflite(graph, path)


def _save_microtrain(graph: Graph, path: Path) -> Path:
    stem = path.with_suffix("") if path.suffix in (".json", ".npz") else path
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, _ = save_graph(graph, stem)
    return json_path


EXPORTERS: dict[str, Callable[[Graph, Path], Path]] = {
    ".tflite": _save_tflite,  # back into the .tflite the graph was imported from (frontend/tflite_export.py)
}
"""Model file suffix -> the writer of that format; any other path is a microtrain .json + .npz stem."""


def save_model(graph: Graph, path: str | Path) -> Path:
    """Write ``graph`` as ``path``: a .tflite (for a graph imported from one) or a microtrain model."""
    path = Path(path)
    return EXPORTERS.get(path.suffix, _save_microtrain)(graph, path)


def load_model(spec: str | Path) -> Graph:
    """'default', a zoo name, or a model file whose suffix ``IMPORTERS`` knows, checked at the
    door: the importers verify the IR (shapes, dtypes, finite positive scales, integral zero
    points), and every requantization multiplier must be representable
    (``runtime.twins.check_requantization``), so that no later step (compile, run, eval) meets a
    model it cannot execute. Problems raise ``ModelFileError`` (a ValueError) or ``ModelNotFound``."""
    from microtrain.runtime.twins import check_requantization

    graph = _load(str(spec))
    try:
        check_meta(graph)
        return check_requantization(graph)
    except ValueError as e:
        raise ModelFileError(f"{spec}: {e}") from None


def _check_image_spec(pre: dict, hwc: list[int]) -> None:
    """Resolution and channels of preprocess describe an image that is the input [H, W, C] or whose
    bytes are the input reshaped (data/preprocess.py: a Conv1d model's [1, 1, L, C] input reads an
    L x C image, row t being frame t). Absent fields are the input's own."""
    res, channels = pre.get("resolution", hwc[:2]), pre.get("channels", hwc[2])
    if not (isinstance(res, list) and len(res) == 2 and all(_count(v) for v in res)):
        raise ValueError(f"meta.preprocess.resolution {res!r} must be [height, width], two positive integers")
    if "channels" in pre and not (_count(channels) and channels in (1, 3)):
        raise ValueError(f"meta.preprocess.channels {channels!r} must be 1 or 3")
    if [*res, channels] != hwc and res[0] * res[1] * channels != math.prod(hwc):
        raise ValueError(f"meta.preprocess resolution {res!r} x channels {channels!r} does not make the "
                         f"input {hwc} (H, W, C)")


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _real(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_meta(graph: Graph) -> Graph:
    """The metadata the verbs act on must describe the graph: ``preprocess`` (how images become
    its input: resolution and channels of the input, a finite range lo < hi) and ``class_names``
    (one string per output class). ValueError naming the field otherwise."""
    x = graph.tensors[graph.inputs[0]]
    pre = graph.meta.get("preprocess", {})
    if not isinstance(pre, dict):
        raise ValueError("meta.preprocess must be an object")
    if len(x.shape) != 4:  # not an image model (e.g. an imported audio or sensor model): no image preprocessing
        pre = {}
    if "resolution" in pre or "channels" in pre:
        _check_image_spec(pre, list(x.shape[1:]))
    if "range" in pre:
        r = pre["range"]
        if not (isinstance(r, list) and len(r) == 2 and all(map(_real, r)) and r[0] < r[1]):
            raise ValueError(f"meta.preprocess.range {r!r} must be two finite numbers lo < hi")
    names = graph.meta.get("class_names")
    classes = graph.tensors[graph.outputs[0]].shape[-1]
    if names is not None and not (isinstance(names, list) and len(names) == classes
                                  and all(isinstance(n, str) for n in names)):
        raise ValueError(f"meta.class_names must be {classes} strings, one per output class")
    return graph


def _load(spec: str) -> Graph:
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
