"""``quantize``: a float PyTorch model -> an int8 microtrain Graph (post-training quantization).

``quantize(module, calibration, ...)`` traces any supported ``nn.Module`` (``frontend/torch_fx.py``),
folds BatchNorm and activations, calibrates activation ranges on float inputs and returns the
verified int8 Graph. ``quantize_checkpoint`` does the same for a float checkpoint of a built-in
architecture (``ARCHS``: the default CNN or an MCU-zoo architecture of ``zoo/mcu_nets.py``): an
``.npz`` state dict (one array per entry) or a ``.pt``/``.pth`` read with
``torch.load(weights_only=True)`` (never unpickles code); the number of classes is read from
the classifier's weight, the calibration images come from a dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from microtrain import quant
from microtrain.api.messages import log
from microtrain.data.datasets import load_dataset
from microtrain.data.preprocess import preprocess_float
from microtrain.errors import UserError
from microtrain.frontend.torch_fx import UnsupportedError, import_torch_module
from microtrain.ir import Graph
from microtrain.models import ZOO_NAMES
from microtrain.zoo.default_cnn import PREPROCESS, build_default_cnn
from microtrain.zoo.mcu_nets import build_mcu_net

ARCHS = ("default", *ZOO_NAMES)
"""Architectures ``quantize_checkpoint`` builds from a state dict."""
ZOO_PREPROCESS = {"resolution": [128, 128], "channels": 3, "range": [-1.0, 1.0]}


def quantize(module: nn.Module, calibration: np.ndarray, *, input_range: Sequence[float] | None = None,
             preprocess: dict | None = None, method: str = "minmax", percentile: float = 99.99,
             name: str | None = None) -> Graph:
    """Post-training quantization of ``module``: ``calibration`` holds float NCHW inputs [N, C, H, W]
    in the model's input range; ``input_range`` (lo, hi): the input quantization covers exactly
    that range (None: calibrated like every other activation);
    ``method`` minmax or percentile (activation ranges clipped at ``percentile``);
    ``preprocess`` is stored as ``graph.meta["preprocess"]`` (how images become inputs)."""
    x = np.asarray(calibration, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise UserError(f"quantize: calibration inputs must be float [N, C, H, W] with N >= 1, got {list(x.shape)}")
    try:
        return import_torch_module(module, (1, *x.shape[1:]), x, method=method, percentile=percentile,
                                   input_quant=(quant.choose_activation_qparams(*input_range)
                                                if input_range is not None else None),
                                   preprocess=preprocess, name=name)
    except (UnsupportedError, ValueError) as e:
        raise UserError(str(e)) from None


def quantize_checkpoint(checkpoint: str | Path, arch: str, calib_data: str, *, calib_samples: int = 512,
                        method: str = "minmax", percentile: float = 99.99, seed: int = 0) -> Graph:
    """A float checkpoint of ``arch`` quantized with ``calib_samples`` class-balanced images of the
    train split of ``calib_data``, preprocessed as the architecture expects."""
    if calib_samples < 1:
        raise UserError("--calib-samples must be >= 1")
    if arch not in ARCHS:
        raise UserError(f"unknown architecture {arch!r}: choose from {', '.join(ARCHS)}")
    module, spec = build_arch(arch, load_state_dict(Path(checkpoint)))
    x = calibration_inputs(calib_data, calib_samples, seed, spec)
    log(f"calibrating {arch} on {len(x)} images of {calib_data} ({method})")
    return quantize(module, x, input_range=spec["range"], preprocess=spec, method=method, percentile=percentile,
                    name=arch)


def calibration_inputs(name: str, samples: int, seed: int, spec: dict) -> np.ndarray:
    """Float NCHW calibration images in the model's input range."""
    try:
        ds = load_dataset(name, "train", limit=samples, seed=seed)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    for note in ds.notes:
        log(f"note: {note}")
    return preprocess_float(ds.images, spec).transpose(0, 3, 1, 2).copy()


def load_state_dict(path: Path) -> dict:
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
        module, spec = build_default_cnn(num_classes), dict(PREPROCESS)
    else:
        module, spec = build_mcu_net(arch, num_classes), dict(ZOO_PREPROCESS)
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"the checkpoint does not fit --arch {arch}: {' '.join(str(e).split())[:400]}") from None
    return module.eval(), spec
