"""Agreement of microtrain's fixed-point int8 arithmetic with onnxruntime on int8 ONNX models.

    .venv/bin/python benchmarks/onnx_agreement.py                 # 1,000 Fashion-MNIST test images
    .venv/bin/python benchmarks/onnx_agreement.py --images 200 --no-write

The user networks of tests/user_models/ (a residual CNN with pooling, a Conv1d
keyword-spotting-like network, a two-branch CNN with max/average pooling, zero padding and a
concatenation) are trained briefly in float, exported to ONNX
(``torch.onnx.export``, opset 17, dynamic batch), pre-processed and quantized by
``onnxruntime.quantization.quantize_static`` (int8 activations and weights, min/max
calibration on 200 training images) in QDQ and QOperator format, per channel and per tensor
(the two-branch network in QDQ only: onnxruntime's QOperator QLinearAveragePool requantizes,
which the int8 average pool does not).
Each int8 model is imported by ``microtrain quantize``'s loader (its own scales and zero
points kept) and run by the batched interpreter (bit-exact with the reference interpreter
and the generated C); onnxruntime runs the same file (CPU, default graph optimizations,
which fuse QDQ pairs into integer kernels). Reported per model: the largest difference of
the int8 output codes over all images and logits (LSB), the fraction of logits that differ,
whether the top-1 class is the same, and both accuracies. Appends to docs/RESULTS.md.

Why they can differ: onnxruntime requantizes each int32 accumulator with a float32
multiplier (s_x * s_w / s_y, rounded to float32) and rounds half to even; microtrain (like
TFLite and CMSIS-NN) uses a 31-bit fixed-point multiplier and rounding shift (half away
from zero). The two give the same integer except near a rounding tie, i.e. by one LSB of
one activation, which later layers may carry forward. In the two-branch network two more
roundings differ: the average pool (onnxruntime rounds the mean half to even, TFLite Micro's
kernel half away from zero) and the concatenation, whose differently quantized inputs
onnxruntime rounds twice (each input's grid, then the concatenation's) and microtrain once
(each input is computed on the concatenation's grid).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import results_md

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

VARIANTS = [("QDQ", True), ("QDQ", False), ("QOperator", True), ("QOperator", False)]
NETS = {"residual": ("RESIDUAL", "image", VARIANTS), "kws": ("KWS", "signal", VARIANTS),
        "branch": ("BRANCH", "image", VARIANTS[:2])}
"""net -> (its name in tests/byom_support.py, input kind, the quantized variants)"""


def export_onnx(module, kind: str, path: Path) -> Path:
    """Float ONNX of a torch module (batch dimension dynamic), pre-processed for quantization."""
    import torch
    from onnxruntime.quantization.shape_inference import quant_pre_process

    example = torch.zeros((1, 1, 28, 28) if kind == "image" else (1, 28, 28))
    raw = path.with_suffix(".raw.onnx")
    torch.onnx.export(module.eval(), (example,), str(raw), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    quant_pre_process(str(raw), str(path))
    raw.unlink()
    return path


def quantize_onnx(float_path: Path, out: Path, calib: np.ndarray, fmt: str, per_channel: bool) -> Path:
    """onnxruntime static int8 quantization (QInt8 activations and weights, min/max)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(float_path), str(out), Reader(), quant_format=getattr(QuantFormat, fmt),
                    per_channel=per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def compare(onnx_path: Path, images: np.ndarray, labels: np.ndarray, model_input) -> dict:
    """microtrain vs onnxruntime on the same images: int8 output codes, top-1, accuracy."""
    import onnxruntime as ort

    from microtrain.data.preprocess import preprocess
    from microtrain.frontend.byom import import_model
    from microtrain.interp.batched import infer_batch

    graph = import_model(onnx_path)
    ours = np.concatenate([infer_batch(graph, preprocess(images[i:i + 250], graph)) for i in range(0, len(images),
                                                                                                   250)])
    ours = ours.reshape(len(images), -1).astype(np.int64)
    q = graph.tensors[graph.outputs[0]].quant
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": model_input(images).numpy()})[0]
    theirs = np.rint(logits / q.s).astype(np.int64) + q.z  # ORT's output is DequantizeLinear of int8 codes
    diff = np.abs(ours - theirs)
    differ = ours.argmax(1) != theirs.argmax(1)
    tied = ((ours == ours.max(1, keepdims=True)).sum(1) > 1) | ((theirs == theirs.max(1, keepdims=True)).sum(1) > 1)
    return {"model": onnx_path.stem, "source": graph.meta["source"], "images": len(images),
            "max_lsb": int(diff.max()), "per_output_max_lsb": diff.max(axis=0).tolist(),
            "logits_differing": float(np.mean(diff > 0)),
            "top1_same": int(np.sum(~differ)), "top1_disagreements_without_tie": int(np.sum(differ & ~tied)),
            "acc_microtrain": float(np.mean(ours.argmax(1) == labels)),
            "acc_onnxruntime": float(np.mean(theirs.argmax(1) == labels))}


def make_models(work: Path, nets: list[str]) -> dict[str, tuple[Path, str]]:
    """Train the user networks, export and quantize them: {name: (onnx path, kind)}."""
    import byom_support
    from byom_support import fashion, model_input, train_float

    from microtrain.frontend.user_model import load_arch

    calib_images = fashion("train", 200, seed=1).images
    models = {}
    for net in nets:
        attr, kind, variants = NETS[net]
        f = export_onnx(train_float(load_arch(getattr(byom_support, attr)), kind), kind, work / f"{net}.onnx")
        calib = model_input(calib_images, kind).numpy()
        for fmt, per_channel in variants:
            name = f"{net}_{fmt.lower()}_{'per_channel' if per_channel else 'per_tensor'}"
            models[name] = (quantize_onnx(f, work / f"{name}.onnx", calib, fmt, per_channel), kind)
    return models


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000, help="Fashion-MNIST test images (default 1000)")
    p.add_argument("--work", default="build/onnx_agreement", help="folder for the ONNX files")
    results_md.add_flag(p)
    p.add_argument("--nets", default=",".join(NETS), help=f"comma-separated networks (default {','.join(NETS)})")
    args = p.parse_args()
    from byom_support import fashion, model_input

    from microtrain.report.tables import Column, render

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    models = make_models(work, args.nets.split(","))
    test = fashion("test", args.images, seed=0)
    rows = []
    for name, (path, kind) in models.items():
        r = compare(path, test.images, test.labels, lambda im, kind=kind: model_input(im, kind))
        rows.append([name, r["max_lsb"], f"{100 * r['logits_differing']:.2f} %", f"{r['top1_same']}/{r['images']}",
                     f"{100 * r['acc_microtrain']:.1f} %", f"{100 * r['acc_onnxruntime']:.1f} %",
                     " ".join(map(str, r["per_output_max_lsb"]))])
    table = render([Column("model"), Column("max LSB", ">"), Column("logits differing", ">"),
                    Column("same top-1", ">"), Column("acc microtrain", ">"), Column("acc onnxruntime", ">"),
                    Column("max LSB per output (classes 0-9)")], rows)
    print(table)
    print(f"({time.time() - t0:.0f} s)")
    if not args.no_write:
        import onnxruntime

        cmd = results_md.command("benchmarks/onnx_agreement.py")
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        results_md.append(
            f"## ONNX int8 models: microtrain vs onnxruntime ({when})\n\n"
            f"`{cmd}` on {platform.machine()}, {os.cpu_count()} cores, onnxruntime "
            f"{onnxruntime.__version__}. {args.images} Fashion-MNIST test images; the user networks "
            f"{args.nets} of tests/user_models/ trained briefly in float, quantized by onnxruntime's "
            "quantize_static (int8, min/max on 200 training images), imported with their own scales and "
            "zero points and run by microtrain's batched interpreter (bit-exact with the generated C). "
            "LSB = one step of the int8 output code.\n\n```\n" + table + "\n```\n\n"
            "Why they can differ: onnxruntime requantizes with a float32 multiplier and rounds half to "
            "even; microtrain (TFLite's int8 spec) with a 31-bit fixed-point multiplier and a rounding "
            "shift (half away from zero). They agree except near rounding ties, by one LSB of an "
            "activation, which later layers can carry forward. The branch network's average pool rounds "
            "half away from zero (TFLite Micro) where onnxruntime rounds half to even, and its concatenation "
            "rounds once (inputs computed on its grid) where onnxruntime rounds twice.\n")


if __name__ == "__main__":
    main()
