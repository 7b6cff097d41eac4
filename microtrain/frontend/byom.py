"""Bring your own model: one entry point from a model file (or the user's module + weights)
to a verified int8 Graph, whatever the source.

    import_model(source, ...)   source is one of
        a weights file (.pt/.pth/.npz/.safetensors) + arch "FILE.py:Class" / "pkg.mod:factory"
        a torch.export archive (.pt2), float or PT2E-quantized
        an ONNX model (.onnx), float, QDQ or QOperator

Every source becomes a FloatPlan (``float_plan.py``); a plan that carries its own int8
quantization (PT2E, ONNX QDQ/QOperator) keeps it, a float plan is calibrated on images
(``ptq.calibrate``), then ``ptq.quantize_plan`` builds the Graph. The preprocessing recorded
in ``graph.meta["preprocess"]`` maps dataset images to the model's input: an image for an
NCHW model, rows as frames and columns as features for an NCL (Conv1d) model, flattened
HWC for a [N, F] model; ``input_range`` is the real range [0, 1] pixels map to.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from microtrain import quant
from microtrain.frontend.float_plan import FloatPlan, UnsupportedError, nhwc_to_model_input
from microtrain.frontend.ptq import calibrate, needs_calibration, quantize_plan
from microtrain.frontend.user_model import ModelLoadError, load_arch, load_state_dict, load_weights
from microtrain.ir.graph import Graph

MODEL_SUFFIXES = (".pt2", ".onnx")


def preprocess_for(plan: FloatPlan, input_range: Sequence[float], images: np.ndarray | None) -> dict:
    """graph.meta["preprocess"] for the plan's input (see the module doc)."""
    shape = plan.shapes[plan.input]
    rng = [float(input_range[0]), float(input_range[1])]
    if plan.input_rank == 4:
        return {"resolution": [shape[2], shape[3]], "channels": shape[1], "range": rng}
    if plan.input_rank == 3:
        return {"resolution": [shape[3], shape[1]], "channels": 1, "range": rng}
    features = shape[1]
    if images is not None:
        h, w = images.shape[1:3]
        c = 1 if images.ndim == 3 else images.shape[3]
        for ch in (c, 1, 3):
            if h * w * ch == features:
                return {"resolution": [h, w], "channels": ch, "range": rng}
    raise ModelLoadError(f"the model takes [N, {features}] features; calibrate it on images of {features} values "
                         "(H*W*C), which are flattened in HWC order")


def calibration_inputs(plan: FloatPlan, spec: dict, images: np.ndarray) -> np.ndarray:
    """Images -> float inputs in the model's own layout and range."""
    from microtrain.data.preprocess import preprocess_float

    return nhwc_to_model_input(preprocess_float(images, spec), plan.input_rank)


def plan_source(source: str | Path, *, arch: str | None = None, arch_args: dict | None = None,
                input_shape: Sequence[int] | None = None,
                images: np.ndarray | None = None) -> tuple[FloatPlan, str, str]:
    """(FloatPlan, capture path, model name) of any source (see the module doc)."""
    path = Path(source)
    if path.suffix == ".pt2":
        from microtrain.frontend.pt2_file import load_pt2
        from microtrain.frontend.torch_export import lower_exported

        if arch:
            raise ModelLoadError(f"{path} is a torch.export program: it needs no --arch")
        plan = lower_exported(load_pt2(path))
        return plan, "pt2e" if plan.given else "torch.export", path.stem
    if path.suffix == ".onnx":
        from microtrain.frontend.onnx_import import load_onnx_plan

        if arch:
            raise ModelLoadError(f"{path} is an ONNX model: it needs no --arch")
        plan, kind = load_onnx_plan(path)
        return plan, kind, path.stem
    if not arch:
        raise ModelLoadError(f"{path}: a weights file needs --arch FILE.py:Class (or a built-in architecture)")
    module = load_weights(load_arch(arch, arch_args), load_state_dict(path), f"--arch {arch}")
    if input_shape is None:
        if images is None:
            raise ModelLoadError("give --input-shape (e.g. 1,3,32,32) for --arch " + arch)
        c = 1 if images.ndim == 3 else images.shape[3]
        input_shape = (1, c, *images.shape[1:3])
    from microtrain.frontend.torch_fx import plan_module

    plan, how = plan_module(module, input_shape)
    return plan, how, arch.rpartition(":")[2]


def import_model(source: str | Path, *, images: np.ndarray | None = None, arch: str | None = None,
                 arch_args: dict | None = None, input_shape: Sequence[int] | None = None,
                 input_range: Sequence[float] = (0.0, 1.0), method: str = "minmax", percentile: float = 99.99,
                 name: str | None = None) -> Graph:
    """A verified int8 Graph from any source. ``images``: calibration images (uint8 or [0, 1]
    float, [N, H, W] or [N, H, W, C]); needed unless the model carries its own quantization."""
    plan, how, stem = plan_source(source, arch=arch, arch_args=arch_args, input_shape=input_shape, images=images)
    if images is None and needs_calibration(plan):
        raise ModelLoadError(f"{source} is a float model: give calibration data (--calib-data)")
    return _quantize(plan, how, name or stem, images, input_range, method, percentile)


def import_int8_file(path: str | Path) -> Graph:
    """An .onnx or .pt2 file as every verb takes it (``microtrain.models.IMPORTERS``): an int8 model
    (ONNX QDQ / QOperator, PT2E) with its own quantization and the default input range [0, 1]; a
    float one is refused with the command that quantizes it."""
    plan, how, stem = plan_source(path)
    if needs_calibration(plan):
        raise ModelLoadError(f"{path} is a float model ({how}): quantize it first, `microtrain quantize {path} "
                             "--calib-data DATA --out MODEL`, then give MODEL.json")
    return _quantize(plan, how, stem, None, (0.0, 1.0), "minmax", 99.99)


def _quantize(plan: FloatPlan, how: str, name: str, images: np.ndarray | None, input_range: Sequence[float],
              method: str, percentile: float) -> Graph:
    spec = preprocess_for(plan, input_range, images)
    if needs_calibration(plan):
        x = calibration_inputs(plan, spec, images)
        try:
            ranges = calibrate(plan, x, method=method, percentile=percentile)
        except ValueError as e:
            raise UnsupportedError(str(e)) from None
        calibration: dict[str, Any] = {"method": method, "samples": int(len(x))}
        if method == "percentile":
            calibration["percentile"] = percentile
        input_quant = quant.choose_activation_qparams(*spec["range"])
    else:
        ranges, input_quant = {}, None
        calibration = {"method": "from the model"}
    meta = {"source": how, "model": name, "preprocess": spec, "calibration": calibration}
    return quantize_plan(plan, ranges, input_quant=input_quant, meta=meta)
