"""``evaluate``, ``predict``, ``inspect``: int8 inference of a model on a dataset, on images, and
its per-layer table (what ``microtrain eval``, ``predict`` and ``inspect`` run)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from microtrain.api.messages import log
from microtrain.api.models import InputRange, ModelSpec, load_model
from microtrain.data.datasets import check_fits, load_dataset
from microtrain.data.preprocess import preprocess, preprocess_spec
from microtrain.errors import UserError
from microtrain.interp.batched import infer_batch
from microtrain.interp.reference import run_graph
from microtrain.ir import Graph, verify_graph
from microtrain.ir.logits import logits_name
from microtrain.report.inspect import analyze


def predict_int8(graph: Graph, x_q: np.ndarray, engine: str = "reference", progress: bool = True,
                 batch_size: int = 250) -> np.ndarray:
    """Argmax class of each int8 input [N,H,W,C] (ties to the lower class index): the reference
    interpreter at batch 1, or ``engine="batched"`` (the same integers, faster)."""
    verify_graph(graph)
    preds = np.empty(len(x_q), dtype=np.int64)
    bar = tqdm(total=len(x_q), file=sys.stderr, disable=not progress, unit="img", desc="int8 eval")
    if engine == "batched":
        for i in range(0, len(x_q), batch_size):
            preds[i:i + batch_size] = infer_batch(graph, x_q[i:i + batch_size], verify=False).argmax(axis=1)
            bar.update(len(x_q[i:i + batch_size]))
    else:
        (name,) = graph.inputs
        for i in range(len(x_q)):
            out = run_graph(graph, {name: x_q[i:i + 1]}, verify=False)[graph.outputs[0]]
            preds[i] = int(np.argmax(out.reshape(-1)))
            bar.update(1)
    bar.close()
    return preds


def per_class(labels: np.ndarray, preds: np.ndarray, class_names: list[str]) -> list[dict]:
    rows = []
    for c, cname in enumerate(class_names):
        mask = labels == c
        n = int(mask.sum())
        correct = int((preds[mask] == c).sum())
        rows.append({"class": c, "name": cname, "count": n, "correct": correct,
                     "accuracy": correct / n if n else None})
    return rows


def evaluate(model: ModelSpec, data: str, *, split: str = "test", limit: int | None = None, seed: int = 0,
             engine: str = "reference", input_range: InputRange = None) -> dict[str, Any]:
    """Top-1 accuracy of an int8 model on a dataset split, overall and per class, and the class predicted
    for each image (the ``eval --json`` document)."""
    graph = load_model(model, input_range)
    try:
        ds = load_dataset(data, split, limit=limit, seed=seed)
        notes = check_fits(ds, graph)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    for note in notes:
        log(f"note: {note}")
    preds = predict_int8(graph, preprocess(ds.images, graph), engine=engine)
    return {"model": str(model), "data": data, "split": split, "samples": len(ds), "engine": engine,
            "accuracy": float(np.mean(preds == ds.labels)), "correct": int(np.sum(preds == ds.labels)),
            "per_class": per_class(ds.labels, preds, ds.class_names), "predictions": preds.tolist()}


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """uint8 [H, W, C] from an image file; UserError when it cannot be read."""
    from PIL import Image, UnidentifiedImageError  # deferred: PIL is only needed for image files

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such image file")
    try:
        with Image.open(p) as img:
            arr = np.asarray(img.convert("RGB" if channels == 3 else "L"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read it as an image ({e}); give a PNG, JPEG, BMP or other file "
                        "that PIL can open") from None
    return arr if arr.ndim == 3 else arr[..., None]


def predict(model: ModelSpec, images: list[str | Path], top: int = 5, input_range: InputRange = None) -> dict[str, Any]:
    """The ``top`` classes of each image under an int8 model (the ``predict --json`` document): each
    image preprocessed as the model expects, run by the reference interpreter, the logits
    dequantized and their softmax probabilities; ties go to the lower class index. A model that
    ends in SOFTMAX (an imported .tflite) already outputs probabilities: they are its int8 output
    dequantized (TFLM's), the classes are ranked by it, and the logits are the SOFTMAX's input."""
    if top < 1:
        raise UserError(f"--top must be at least 1, got {top}")
    graph = load_model(model, input_range)
    n_classes = graph.tensors[graph.outputs[0]].shape[-1]
    top = min(top, n_classes)
    log(f"predict: {model} ({n_classes} classes), {len(images)} image(s)")
    channels = int(preprocess_spec(graph)["channels"])
    out = graph.outputs[0]
    logit_t = graph.tensors[logits_name(graph)]
    names = graph.meta.get("class_names")
    results = []
    for path in images:
        x = preprocess(read_image(path, channels)[None], graph)
        values = run_graph(graph, {graph.inputs[0]: x}, keep_all=True)
        logits_q = values[logit_t.name].reshape(-1).astype(np.int64)
        logits = logit_t.quant.s * (logits_q - logit_t.quant.z)
        if logit_t.name == out:
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            rank_q = logits_q
        else:  # the model's own int8 SOFTMAX
            rank_q = values[out].reshape(-1).astype(np.int64)
            probs = graph.tensors[out].quant.s * (rank_q - graph.tensors[out].quant.z)
        order = np.argsort(-rank_q, kind="stable")[:top]
        results.append({"image": str(path), "top": [
            {"class": int(c), "name": names[c] if names else None, "logit": float(logits[c]),
             "logit_q": int(logits_q[c]), "prob": float(probs[c])} for c in order]})
    return {"model": str(model), "classes": n_classes, "top": top, "predictions": results}


def inspect(model: ModelSpec) -> dict[str, Any]:
    """Per-layer table and flash / peak-SRAM totals of an int8 model (the ``inspect --json`` document)."""
    return {"model": str(model), **analyze(load_model(model))}
