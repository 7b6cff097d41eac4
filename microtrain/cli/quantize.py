"""``microtrain quantize CHECKPOINT --arch A --calib-data NAME --out PATH``: float -> int8 model.

The checkpoint is a state dict of architecture ``A`` (the default CNN or one of the
MCU-zoo architectures of ``zoo/mcu_nets.py``): an ``.npz`` (one array per entry) or a
``.pt``/``.pth`` read with ``torch.load(weights_only=True)`` (never unpickles code). The
number of classes is read from the classifier's weight. Calibration images come from a
dataset (``microtrain.data.datasets``), preprocessed as the architecture expects; the input
quantization covers that preprocessing range exactly. Writes ``PATH.json`` + ``PATH.npz``.
"""

from __future__ import annotations

import argparse

import microtrain
from microtrain.api.quantize import ARCHS
from microtrain.cli.common import emit, percentage, positive_int, seed_int


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "quantize",
        help="post-training quantization of a PyTorch checkpoint to an int8 microtrain model",
        description="Load a float checkpoint (.npz state dict, or .pt/.pth read with torch.load(weights_only=True)) "
                    "into an architecture, trace it with torch.fx, fold BatchNorm and activations, calibrate "
                    "activation ranges on a dataset and write the int8 model (PATH.json + PATH.npz).",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="float state dict: .npz, .pt or .pth")
    p.add_argument("--arch", required=True, choices=list(ARCHS), help="architecture of the checkpoint")
    p.add_argument("--calib-data", required=True, metavar="NAME",
                   help="calibration dataset: fashion-mnist, digits, a folder of class sub-folders or an .npz")
    p.add_argument("--calib-samples", type=positive_int, default=512, metavar="N",
                   help="class-balanced calibration images from the train split (default 512)")
    p.add_argument("--method", choices=("minmax", "percentile"), default="minmax",
                   help="activation range: observed min/max (default) or a percentile")
    p.add_argument("--percentile", type=percentage, default=99.99, help="percentile for --method percentile")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the calibration subset (default 0)")
    p.add_argument("--out", required=True, metavar="PATH", help="output stem: writes PATH.json and PATH.npz")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    graph = microtrain.quantize_checkpoint(args.checkpoint, args.arch, args.calib_data,
                                           calib_samples=args.calib_samples, method=args.method,
                                           percentile=args.percentile, seed=args.seed)
    model = microtrain.save_model(graph, args.out)
    doc = {"model": str(model), "weights": str(model.with_suffix(".npz")), "arch": args.arch,
           "layers": len(graph.weighted_nodes()), "nodes": len(graph.nodes),
           "num_classes": int(graph.tensors[graph.outputs[0]].shape[-1]), "calibration": graph.meta["calibration"],
           "calib_data": args.calib_data}
    samples = graph.meta["calibration"]["samples"]
    emit(args, doc, lambda: print(f"wrote {doc['model']} (+ .npz): {doc['layers']} layers, {doc['nodes']} nodes, "
                                  f"{doc['num_classes']} classes; calibrated on {samples} images of {args.calib_data}"))
    return 0
