"""``microtrain quantize MODEL [--arch A] --calib-data NAME --out PATH``: a model -> int8 microtrain model.

MODEL is a weights file of architecture ``A`` (a built-in one, or the user's own module
``FILE.py:Class`` / ``package.module:factory``, which runs the user's code as ``python FILE.py``
would), a ``torch.export`` program (``.pt2``) or an ONNX model (``.onnx``); see
``api/quantize.py``. Writes ``PATH.json`` + ``PATH.npz``.
"""

from __future__ import annotations

import argparse

import microtrain
from microtrain.api.quantize import ARCHS
from microtrain.cli.common import emit, percentage, positive_int, seed_int
from microtrain.errors import UserError


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "quantize",
        help="post-training quantization of a PyTorch checkpoint to an int8 microtrain model",
        description="Load a float checkpoint (.npz state dict, or .pt/.pth read with torch.load(weights_only=True)) "
                    "into an architecture, trace it with torch.fx, fold BatchNorm and activations, calibrate "
                    "activation ranges on a dataset and write the int8 model (PATH.json + PATH.npz).",
    )
    p.add_argument("checkpoint", metavar="MODEL",
                   help="weights (.npz, .pt, .pth, .safetensors) for --arch, or a model: .pt2 (torch.export, "
                        "float or PT2E-quantized) or .onnx (float, QDQ or QOperator int8)")
    p.add_argument("--arch", metavar="ARCH",
                   help=f"architecture of the weights: {', '.join(ARCHS)}, or your own module as "
                        "FILE.py:Class or package.module:factory (runs your code, as `python FILE.py` would)")
    p.add_argument("--arch-args", metavar="JSON", help="keyword arguments for your class or factory, as a JSON "
                   "object (e.g. '{\"classes\": 10}')")
    p.add_argument("--input-shape", metavar="1,C,H,W",
                   help="input shape of your module: 1,C,H,W (image), 1,C,L (Conv1d signal: image rows are "
                        "frames, columns features) or 1,F (features); default: the calibration images' shape")
    p.add_argument("--input-range", metavar="LO,HI", default="0,1",
                   help="real input range pixel values 0..255 map to, for your module (default 0,1)")
    p.add_argument("--calib-data", metavar="NAME",
                   help="calibration dataset: fashion-mnist, digits, a folder of class sub-folders or an .npz "
                        "(not needed for a model that carries its own int8 quantization)")
    p.add_argument("--calib-samples", type=positive_int, default=512, metavar="N",
                   help="class-balanced calibration images from the train split (default 512)")
    p.add_argument("--method", choices=("minmax", "percentile"), default="minmax",
                   help="activation range: observed min/max (default) or a percentile")
    p.add_argument("--percentile", type=percentage, default=99.99, help="percentile for --method percentile")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the calibration subset (default 0)")
    p.add_argument("--out", required=True, metavar="PATH", help="output stem: writes PATH.json and PATH.npz")
    p.set_defaults(func=run)
    return p


def _numbers(text: str | None, what: str, cast=int) -> list | None:
    if text is None:
        return None
    try:
        return [cast(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} must be comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    graph = microtrain.quantize_checkpoint(args.checkpoint, args.arch, args.calib_data,
                                           calib_samples=args.calib_samples, method=args.method,
                                           percentile=args.percentile, seed=args.seed, arch_args=args.arch_args,
                                           input_shape=_numbers(args.input_shape, "--input-shape"),
                                           input_range=_numbers(args.input_range, "--input-range", float))
    model = microtrain.save_model(graph, args.out)
    doc = {"model": str(model), "weights": str(model.with_suffix(".npz")), "arch": args.arch or graph.meta["model"],
           "source": graph.meta.get("source"), "layers": len(graph.weighted_nodes()), "nodes": len(graph.nodes),
           "num_classes": int(graph.tensors[graph.outputs[0]].shape[-1]), "calibration": graph.meta["calibration"],
           "calib_data": args.calib_data}
    samples = graph.meta["calibration"].get("samples")
    how = f"calibrated on {samples} images of {args.calib_data}" if samples else "int8 quantization kept from the model"
    emit(args, doc, lambda: print(f"wrote {doc['model']} (+ .npz): {doc['layers']} layers, {doc['nodes']} nodes, "
                                  f"{doc['num_classes']} outputs; {how}"))
    return 0
