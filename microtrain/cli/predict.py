"""``microtrain predict MODEL IMAGE... [--top K]``: top-K classes per image, int8 reference inference.

Each image is read with PIL, converted to the model's channels, resized and normalised as
``graph.meta["preprocess"]`` says (zoo models: 128x128 RGB in [-1, 1]), quantized to the
model's input, and run by the reference interpreter. The table lists, per image, the K
classes with the largest logits, the logits dequantized (s_y * (q - z_y)) and their
softmax probabilities. Ties between equal int8 logits go to the lower class index.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from microtrain.cli.common import UserError, emit, log
from microtrain.ir import Graph, ModelFileError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="top-K classes of images under an int8 model",
        description="Classify images with an int8 model run by the reference interpreter: each image is "
                    "resized and normalised as the model expects (zoo models: 128x128 RGB in [-1, 1]) and "
                    "the K classes with the largest logits are printed.",
    )
    p.add_argument("model", metavar="MODEL",
                   help="'default', mcunet-5fps | mbv2-w0.35 | proxyless-w0.3, a zoo .pkl or a microtrain .json")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ... anything PIL reads)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="how many classes to list per image (default 5)")
    p.set_defaults(func=run)
    return p


def _load_graph(spec: str) -> Graph:
    from microtrain.models import ModelNotFound, load_model

    try:
        return load_model(spec)
    except (ModelNotFound, ModelFileError) as e:
        raise UserError(str(e)) from None


def read_image(path: str, channels: int) -> np.ndarray:
    """uint8 [H, W, C] from an image file; UserError when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

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


def predict_images(graph: Graph, paths: list[str], top: int) -> list[dict]:
    from microtrain.data.preprocess import preprocess, preprocess_spec
    from microtrain.interp.reference import infer

    channels = int(preprocess_spec(graph)["channels"])
    out_q = graph.tensors[graph.outputs[0]].quant
    names = graph.meta.get("class_names")
    results = []
    for path in paths:
        x = preprocess(read_image(path, channels)[None], graph)
        logits_q = infer(graph, x)[0].astype(np.int64)
        logits = out_q.s * (logits_q - out_q.z)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-logits_q, kind="stable")[:top]
        results.append({"image": path, "top": [
            {"class": int(c), "name": names[c] if names else None, "logit": float(logits[c]),
             "logit_q": int(logits_q[c]), "prob": float(probs[c])} for c in order]})
    return results


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    graph = _load_graph(args.model)
    n_classes = graph.tensors[graph.outputs[0]].shape[-1]
    top = min(args.top, n_classes)
    log(f"predict: {args.model} ({n_classes} classes), {len(args.images)} image(s)")
    results = predict_images(graph, args.images, top)
    doc = {"model": args.model, "classes": n_classes, "top": top, "predictions": results}

    def human() -> None:
        width = max(len("image"), *(len(r["image"]) for r in results))
        named = any(t["name"] for r in results for t in r["top"])
        print(f"{'image':<{width}}  rank  class  {'logit':>7}  {'prob':>6}" + ("  name" if named else ""))
        for r in results:
            for rank, t in enumerate(r["top"], 1):
                label = r["image"] if rank == 1 else ""
                print(f"{label:<{width}}  {rank:>4}  {t['class']:>5}  {t['logit']:>7.3f}  {t['prob']:>6.3f}"
                      + (f"  {t['name'] or ''}" if named else ""))

    emit(args, doc, human)
    return 0
