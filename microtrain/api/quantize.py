"""``quantize``: a PyTorch model, .pt2 or ONNX file -> an int8 microtrain Graph.

``quantize(module, calibration, ...)`` traces any supported ``nn.Module`` (``frontend/torch_fx.py``,
torch.export where fx cannot trace), folds BatchNorm and activations, calibrates activation
ranges on float inputs and returns the verified int8 Graph. ``quantize_checkpoint`` does the
same from files: weights (``.npz``, ``.pt``/``.pth`` read with ``torch.load(weights_only=True)``,
``.safetensors``) of a built-in architecture (``ARCHS``: the default CNN or an MCU-zoo one; the
number of classes is read from the classifier's weight) or of the user's own module
(``arch="FILE.py:Class"`` or ``"package.module:factory"``, which runs the user's code), or a
model file that needs no architecture: a ``torch.export`` program (``.pt2``, float or
PT2E-quantized) or an ONNX model (``.onnx``, float, QDQ or QOperator). A model that carries
its own int8 quantization keeps it (``frontend/byom.py``); a float one is calibrated on
images of a dataset. Weights files are only ever read as tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn

from microtrain import quant
from microtrain.api.messages import log
from microtrain.data.datasets import load_dataset
from microtrain.data.preprocess import preprocess_float
from microtrain.errors import UserError
from microtrain.frontend.torch_fx import UnsupportedError, import_torch_module
from microtrain.frontend.user_model import ModelLoadError
from microtrain.frontend.user_model import load_state_dict as _load_state_dict
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


def quantize_checkpoint(checkpoint: str | Path, arch: str | None, calib_data: str | None, *,
                        calib_samples: int = 512, method: str = "minmax", percentile: float = 99.99, seed: int = 0,
                        arch_args: dict | str | None = None, input_shape: Sequence[int] | None = None,
                        input_range: Sequence[float] = (0.0, 1.0)) -> Graph:
    """``checkpoint`` quantized with ``calib_samples`` class-balanced images of the train split of
    ``calib_data`` (see the module doc for what ``checkpoint`` and ``arch`` may be). For the
    user's module: ``arch_args`` (keyword arguments of the class or factory, a dict or JSON text), ``input_shape``
    (1,C,H,W image; 1,C,L signal, whose frames are image rows; 1,F features; default: the
    calibration images' shape) and ``input_range`` (the real range pixels 0..255 map to)."""
    if calib_samples < 1:
        raise UserError("--calib-samples must be >= 1")
    if arch not in ARCHS:
        return _import_own(checkpoint, arch, calib_data, calib_samples, method, percentile, seed, arch_args,
                           input_shape, input_range)
    if not calib_data:
        raise UserError("--calib-data is required to quantize a float checkpoint")
    module, spec = build_arch(arch, load_state_dict(Path(checkpoint)))
    x = calibration_inputs(calib_data, calib_samples, seed, spec)
    log(f"calibrating {arch} on {len(x)} images of {calib_data} ({method})")
    return quantize(module, x, input_range=spec["range"], preprocess=spec, method=method, percentile=percentile,
                    name=arch)


def _import_own(checkpoint, arch, calib_data, calib_samples, method, percentile, seed, arch_args, input_shape,
                input_range) -> Graph:
    """The user's module, a .pt2 or an .onnx file (``frontend/byom.py``)."""
    from microtrain.frontend.byom import import_model
    from microtrain.frontend.user_model import parse_arch_args

    if len(input_range) != 2 or not input_range[0] < input_range[1]:
        raise UserError(f"--input-range must be LO,HI with LO < HI, got {list(input_range)}")
    images = calibration_images(calib_data, calib_samples, seed) if calib_data else None
    if images is not None:
        log(f"calibrating on {len(images)} images of {calib_data} ({method}) unless the model is int8")
    try:
        if isinstance(arch_args, str) or arch_args is None:
            arch_args = parse_arch_args(arch_args)
        return import_model(checkpoint, images=images, arch=arch, arch_args=arch_args, input_shape=input_shape,
                            input_range=input_range, method=method, percentile=percentile)
    except ValueError as e:  # UnsupportedError, ModelLoadError
        raise UserError(str(e)) from None


def calibration_images(name: str, samples: int, seed: int) -> np.ndarray:
    try:
        ds = load_dataset(name, "train", limit=samples, seed=seed)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    for note in ds.notes:
        log(f"note: {note}")
    return ds.images


def calibration_inputs(name: str, samples: int, seed: int, spec: dict) -> np.ndarray:
    """Float NCHW calibration images in the model's input range."""
    return preprocess_float(calibration_images(name, samples, seed), spec).transpose(0, 3, 1, 2).copy()


def load_state_dict(path: Path) -> dict:
    """name -> tensor from .npz/.pt/.pth/.safetensors (``frontend/user_model.py``: never runs code)."""
    try:
        return _load_state_dict(path)
    except ModelLoadError as e:
        raise UserError(str(e)) from None


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
