"""The API's model functions: load, save, run int8, and resolve a model + head + scheme.

Every mistake a user can fix is a ``UserError`` whose message says what was wrong and how to
fix it (the CLI prints it as one line with exit code 2).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from microtrain import models
from microtrain.errors import UserError
from microtrain.frontend.heads import new_head
from microtrain.interp.batched import infer_batch
from microtrain.ir import Graph, IRError, ModelFileError
from microtrain.scheme import SchemeError, UpdateScheme, check_scheme
from microtrain.sparse.presets import load_scheme

ModelSpec = str | Path | Graph
"""'default', a zoo name (mcunet-5fps, mbv2-w0.35, proxyless-w0.3), a model file whose suffix
``microtrain.models.IMPORTERS`` knows (a zoo .pkl, an int8 .tflite, a microtrain .json + .npz),
or a Graph."""

InputRange = str | tuple[float, float] | None
"""The real values of pixel values 0..1 at the model's input: (LO, HI) or the text "LO,HI";
None keeps what the model records ([0, 1] for a .tflite that says nothing)."""

SchemeSpec = str | Path | UpdateScheme
"""A preset name (full, bias-only, classifier-only, last-k:<k>, last-blocks:<n>,
<model>/<budget>), a scheme JSON file, or an UpdateScheme."""


def load_model(spec: ModelSpec, input_range: InputRange = None) -> Graph:
    """The verified int8 Graph of a model spec (a Graph is returned as it is), with ``input_range``
    (``with_input_range``) when given."""
    if not isinstance(spec, Graph):
        try:
            spec = models.load_model(spec)
        except (models.ModelNotFound, FileNotFoundError) as e:
            raise UserError(str(e)) from None
        except (ModelFileError, IRError) as e:
            raise UserError(f"cannot load model {str(spec)!r}: {e}") from None
    return with_input_range(spec, input_range)


def with_input_range(graph: Graph, input_range: InputRange) -> Graph:
    """``graph`` whose preprocessing maps pixel values 0..1 onto [LO, HI] (``meta["preprocess"]["range"]``,
    kept by every model file microtrain writes); None: unchanged."""
    if input_range is None:
        return graph
    if isinstance(input_range, str):
        try:
            lo, hi = (float(v) for v in input_range.split(","))
        except ValueError:
            raise UserError(f"--input-range {input_range!r}: give two numbers LO,HI such as 0,1 or -1,1") from None
    else:
        lo, hi = (float(v) for v in input_range)
    if not lo < hi:
        raise UserError(f"--input-range {lo:g},{hi:g}: LO must be below HI")
    pre = graph.meta.get("preprocess")
    if pre is None:
        raise UserError("--input-range: the model's input is not an image (it has no preprocessing to set)")
    return graph.replace(meta={**graph.meta, "preprocess": {**pre, "range": [lo, hi]}})


def save_model(graph: Graph, path: str | Path) -> Path:
    """Write ``graph``: as a .tflite when ``path`` ends in .tflite (a graph imported from one: the same
    file with its tensors, ``frontend/tflite_export.py``), else as ``<path>.json`` + ``<path>.npz`` (a
    .json/.npz suffix is dropped). Returns the path written (the .json of a microtrain model)."""
    try:
        return models.save_model(graph, path)
    except ModelFileError as e:
        raise UserError(f"cannot write {path}: {e}") from None


def check_export(graph: Graph, path: str | Path | None) -> None:
    """Refuse, before any work, an export the model cannot be written as (a .tflite needs a graph imported
    from one)."""
    if path is not None and str(path).endswith(".tflite") and not graph.meta.get("tflite"):
        raise UserError(f"--export {path}: this model was not imported from a .tflite, so there is no file to "
                        "write its trained tensors into; export to a .json path stem instead")


def run_int8(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Run a batch of int8 inputs in the graph's input layout (NHWC, [N, H, W, C]; a single sample
    may also be given in the graph's own [1, H, W, C]) and return the int8 outputs [N, ...]: the
    integers the device computes (the batched interpreter, bit-exact with the reference one)."""
    (name,) = graph.inputs
    want = graph.tensors[name].shape[1:]
    x = np.asarray(x)
    if x.dtype != np.int8 or tuple(x.shape[1:]) != want:
        raise UserError(f"run_int8: inputs must be int8 [N, {', '.join(map(str, want))}], got {x.dtype}"
                        f"{list(x.shape)}; quantize images with microtrain.data.preprocess.preprocess")
    return infer_batch(graph, x)


def with_head(graph: Graph, classes: int | None, seed: int = 0) -> Graph:
    """``graph`` with a new, seeded ``classes``-way classifier head (``frontend/heads.py``); None: as it is."""
    if classes is None:
        return graph
    try:
        return new_head(graph, classes, seed=seed)
    except ValueError as e:
        raise UserError(f"--classes {classes}: {e}") from None


def resolve_scheme(scheme: SchemeSpec, graph: Graph) -> UpdateScheme:
    """An update scheme for ``graph``: a preset, a scheme file, or a scheme (checked against the graph)."""
    try:
        if isinstance(scheme, UpdateScheme):
            return check_scheme(scheme, graph)
        return load_scheme(str(scheme), graph)
    except SchemeError as e:
        raise UserError(f"--scheme {scheme}: {e}") from None


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A model ready to train: its graph (with the new head, if any) and the resolved scheme."""

    graph: Graph
    scheme: UpdateScheme | None


def prepare(model: ModelSpec, classes: int | None = None, scheme: SchemeSpec | None = None,
            seed: int = 0, input_range: InputRange = None) -> Prepared:
    """Model + head + scheme, resolved once for every verb: load ``model`` (with ``input_range``);
    with ``classes``, give it a new ``classes``-way head seeded by ``seed`` (transfer to a new task);
    resolve ``scheme`` against the resulting graph."""
    graph = with_head(load_model(model, input_range), classes, seed)
    return Prepared(graph, resolve_scheme(scheme, graph) if scheme is not None else None)
