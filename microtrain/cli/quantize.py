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
from pathlib import Path

import numpy as np

from microtrain.cli.common import UserError, emit, log

ZOO_PREPROCESS = {"resolution": [128, 128], "channels": 3, "range": [-1.0, 1.0]}


def arch_names() -> list[str]:
    from microtrain.models import ZOO_NAMES

    return ["default", *ZOO_NAMES]


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "quantize",
        help="post-training quantization of a PyTorch checkpoint to an int8 microtrain model",
        description="Load a float checkpoint (.npz state dict, or .pt/.pth read with torch.load(weights_only=True)) "
                    "into an architecture, trace it with torch.fx, fold BatchNorm and activations, calibrate "
                    "activation ranges on a dataset and write the int8 model (PATH.json + PATH.npz).",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="float state dict: .npz, .pt or .pth")
    p.add_argument("--arch", required=True, choices=arch_names(), help="architecture of the checkpoint")
    p.add_argument("--calib-data", required=True, metavar="NAME",
                   help="calibration dataset: fashion-mnist, digits, a folder of class sub-folders or an .npz")
    p.add_argument("--calib-samples", type=int, default=512, metavar="N",
                   help="class-balanced calibration images from the train split (default 512)")
    p.add_argument("--method", choices=("minmax", "percentile"), default="minmax",
                   help="activation range: observed min/max (default) or a percentile")
    p.add_argument("--percentile", type=float, default=99.99, help="percentile for --method percentile")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset (default 0)")
    p.add_argument("--out", required=True, metavar="PATH", help="output stem: writes PATH.json and PATH.npz")
    p.set_defaults(func=run)
    return p


def load_state_dict(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: torch.from_numpy(f[k]) for k in f.files}
        except (ValueError, OSError) as e:
            raise UserError(f"{path}: not a readable .npz state dict ({e})") from None
    if path.suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for bad/hostile files
            raise UserError(f"{path}: torch.load(weights_only=True) refused it ({str(e).splitlines()[0]}); "
                            "save a plain state dict (torch.save(model.state_dict(), ...))") from None
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise UserError(f"{path}: expected a state dict (name -> tensor)")
        return {k.removeprefix("module."): v for k, v in obj.items()}
    raise UserError(f"{path}: unknown checkpoint type {path.suffix!r}; give an .npz, .pt or .pth state dict")


def build_arch(arch: str, state: dict):
    """(module with the checkpoint loaded, preprocess spec)."""
    if "classifier.weight" not in state:
        raise UserError(f"the checkpoint has no 'classifier.weight': is it a {arch!r} state dict?")
    num_classes = int(state["classifier.weight"].shape[0])
    if arch == "default":
        from microtrain.zoo.default_cnn import PREPROCESS, build_default_cnn

        module, spec = build_default_cnn(num_classes), dict(PREPROCESS)
    else:
        from microtrain.zoo.mcu_nets import build_mcu_net

        module, spec = build_mcu_net(arch, num_classes), dict(ZOO_PREPROCESS)
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"the checkpoint does not fit --arch {arch}: {' '.join(str(e).split())[:400]}") from None
    return module.eval(), spec


def calibration_inputs(name: str, samples: int, seed: int, spec: dict) -> np.ndarray:
    """Float NCHW calibration images in the model's input range."""
    from microtrain.data.datasets import load_dataset
    from microtrain.data.preprocess import preprocess_float

    try:
        ds = load_dataset(name, "train", limit=samples, seed=seed)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    return preprocess_float(ds.images, spec).transpose(0, 3, 1, 2).copy()


def run(args: argparse.Namespace) -> int:
    from microtrain import quant
    from microtrain.frontend.torch_fx import UnsupportedError, import_torch_module
    from microtrain.ir import save_graph

    if args.calib_samples < 1:
        raise UserError("--calib-samples must be >= 1")
    module, spec = build_arch(args.arch, load_state_dict(Path(args.checkpoint)))
    x = calibration_inputs(args.calib_data, args.calib_samples, args.seed, spec)
    log(f"calibrating {args.arch} on {len(x)} images of {args.calib_data} ({args.method})")
    try:
        graph = import_torch_module(module, (1, spec["channels"], *spec["resolution"]), x, method=args.method,
                                    percentile=args.percentile, input_quant=quant.choose_activation_qparams(
                                        *spec["range"]), preprocess=spec, name=args.arch)
    except (UnsupportedError, ValueError) as e:
        raise UserError(str(e)) from None
    out = Path(args.out)
    out = out.with_suffix("") if out.suffix in (".json", ".npz") else out
    out.parent.mkdir(parents=True, exist_ok=True)
    save_graph(graph, out)
    layers = graph.weighted_nodes()
    doc = {"model": str(out.with_suffix(".json")), "weights": str(out.with_suffix(".npz")), "arch": args.arch,
           "layers": len(layers), "nodes": len(graph.nodes),
           "num_classes": int(graph.tensors[graph.outputs[0]].shape[-1]), "calibration": graph.meta["calibration"],
           "calib_data": args.calib_data}
    emit(args, doc, lambda: print(f"wrote {doc['model']} (+ .npz): {doc['layers']} layers, {doc['nodes']} nodes, "
                                  f"{doc['num_classes']} classes; calibrated on {len(x)} images of {args.calib_data}"))
    return 0
