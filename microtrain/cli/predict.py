"""``microtrain predict MODEL IMAGE... [--top K]``: top-K classes per image, int8 reference inference.

Each image is read with PIL, converted to the model's channels, resized and normalised as
``graph.meta["preprocess"]`` says (zoo models: 128x128 RGB in [-1, 1]), quantized to the
model's input, and run by the reference interpreter. The table lists, per image, the K
classes with the largest logits, the logits dequantized (s_y * (q - z_y)) and their
softmax probabilities. Ties between equal int8 logits go to the lower class index.
"""

from __future__ import annotations

import argparse

import microtrain
from microtrain.cli.common import MODEL_HELP, add_input_range, emit


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="top-K classes of images under an int8 model",
        description="Classify images with an int8 model run by the reference interpreter: each image is "
                    "resized and normalised as the model expects (zoo models: 128x128 RGB in [-1, 1]) and "
                    "the K classes with the largest logits are printed.",
    )
    p.add_argument("model", metavar="MODEL",
                   help=MODEL_HELP)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files (PNG, JPEG, ... anything PIL reads)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="how many classes to list per image (default 5)")
    add_input_range(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    doc = microtrain.predict(args.model, args.images, args.top, input_range=args.input_range)
    results = doc["predictions"]

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
