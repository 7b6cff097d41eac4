"""``make demo``: the main job end to end, on the built-in default CNN.

Steps 1-5: float model -> post-training quantization -> float vs int8 accuracy on
Fashion-MNIST -> the inspect table. Steps 6-10 (``demo_ondevice``): transfer to a task the
model never saw (handwritten digits, new 10-class head): choose a sparse update scheme
for a memory budget, compile the training step to C for a Cortex-M7 at 256 KB SRAM / 1 MB
flash, and train it on the emulated microcontroller (QEMU), with held-out accuracy before
and after, prequential accuracy, the memory measured from the firmware and the cost per
step; then the paper's baseline, cloud training + edge deployment (``demo_cloud``), on the
same data, and a plot of both runs (out/demo/training.png). The numbers are the same on
every run (seeded; the device's arithmetic is bit-exact).

    python -m microtrain.demo              # committed float checkpoint (zoo/checkpoints)
    python -m microtrain.demo --train      # train the float model first (a few minutes)
    python -m microtrain.demo --no-device  # steps 1-5 only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from microtrain import demo_ondevice
from microtrain.api.evaluate import predict_int8
from microtrain.data.datasets import Dataset, load_dataset
from microtrain.data.preprocess import preprocess
from microtrain.frontend.torch_fx import import_torch_module
from microtrain.ir.graph import Graph
from microtrain.report.inspect import analyze, format_table
from microtrain.zoo import default_cnn as dc

CALIB_SAMPLES = 512
DEFAULT_TEST_LIMIT = 2000
CHECK_SAMPLES = 200  # images on which the batched evaluator is checked against the reference interpreter


def banner(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def step_float_model(train: bool, epochs: int) -> torch.nn.Module:
    """The float default CNN: the committed checkpoint, or freshly trained with ``--train``."""
    banner("1. float model")
    if train:
        model = dc.train_default_cnn(epochs=epochs)
        print(f"trained {epochs} epochs on Fashion-MNIST")
    else:
        model = dc.load_default_float()
        print(f"loaded {dc.FLOAT_CHECKPOINT.name} (microtrain/zoo/checkpoints/, made by "
              "scripts/make_default_checkpoint.py)")
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters (MobileNetV2-style, 28x28x1 input)")
    return model


def step_data(test_limit: int | None) -> tuple[Dataset, Dataset]:
    """Calibration images (train split, class-balanced) and the test set."""
    banner("2. data")
    calib = load_dataset("fashion-mnist", "train", limit=CALIB_SAMPLES, seed=0)
    test = load_dataset("fashion-mnist", "test", limit=test_limit, seed=0)
    print(f"Fashion-MNIST: {len(calib)} calibration images (train split), {len(test)} test images"
          + (" (full test set)" if test_limit is None else f" (class-balanced subset of {test_limit})"))
    return calib, test


def step_quantize(model: torch.nn.Module, calib: Dataset) -> Graph:
    """torch.fx import: BN folding, per-channel int8 weights, calibrated int8 activations."""
    banner("3. post-training quantization")
    start = time.time()
    graph = import_torch_module(model, (1, 1, 28, 28), dc.to_float_input(calib.images), input_quant=dc.INPUT_QUANT,
                                preprocess=dc.PREPROCESS, name="default-cnn")
    print(f"int8 graph: {len(graph.nodes)} nodes, {len(graph.weighted_nodes())} layers "
          f"({time.time() - start:.1f} s)")
    return graph


def step_accuracy(model: torch.nn.Module, graph: Graph, test: Dataset) -> dict:
    """Float accuracy (torch) and int8 accuracy (integer-only inference of the graph)."""
    banner("4. accuracy on the test set")
    float_acc = dc.float_accuracy(model, test.images, test.labels)
    x_q = preprocess(test.images, graph)
    start = time.time()
    preds = predict_int8(graph, x_q, engine="batched")
    reference = predict_int8(graph, x_q[:CHECK_SAMPLES], engine="reference", progress=False)
    if not np.array_equal(reference, preds[:CHECK_SAMPLES]):
        raise AssertionError("batched int8 evaluator disagrees with the reference interpreter")
    int8_acc = float(np.mean(preds == test.labels))
    print(f"float32: {100 * float_acc:.2f} %")
    print(f"int8:    {100 * int8_acc:.2f} %  (delta {100 * (int8_acc - float_acc):+.2f} points; "
          f"{len(test)} images in {time.time() - start:.1f} s by interp.batched, identical to the reference "
          f"interpreter on the first {CHECK_SAMPLES})")
    return {"float": float_acc, "int8": int8_acc, "samples": len(test)}


def step_inspect(graph: Graph) -> None:
    banner("5. int8 model (microtrain inspect default)")
    print(format_table(analyze(graph)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m microtrain.demo", description=__doc__.splitlines()[0])
    p.add_argument("--train", action="store_true", help="train the float model instead of loading the checkpoint")
    p.add_argument("--epochs", type=int, default=3, help="epochs for --train (default 3)")
    p.add_argument("--test-limit", type=int, default=DEFAULT_TEST_LIMIT,
                   help=f"evaluate a class-balanced subset of N test images (default {DEFAULT_TEST_LIMIT}, so that "
                        "the demo stays well under 2 minutes; 0 = the full 10,000; benchmarks/ptq.py has the full "
                        "test set numbers)")
    p.add_argument("--no-device", action="store_true", help="skip steps 6-10 (training on the emulated Cortex-M7)")
    p.add_argument("--work", default="out/demo", help="folder for the scheme, C project and runs (default out/demo)")
    p.add_argument("--budget", default="48KB", help="SRAM budget of the compiled training step for the scheme "
                   "search (default 48KB)")
    args = p.parse_args(argv)
    start = time.time()
    try:
        model = step_float_model(args.train, args.epochs)
        calib, test = step_data(args.test_limit or None)
    except FileNotFoundError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    graph = step_quantize(model, calib)
    step_accuracy(model, graph, test)
    step_inspect(graph)
    if not args.no_device:
        try:
            result = demo_ondevice.main(Path(args.work), budget=args.budget)
        except RuntimeError as e:
            print(f"demo: {e}", file=sys.stderr)
            return 1
        step_summary(result)
    print(f"\ndemo finished in {time.time() - start:.0f} s")
    return 0


def step_summary(r: dict) -> None:
    """The numbers a user came for, in one place: the paper's claim, side by side."""
    banner("summary: on-device transfer to a new task")
    passes = r["steps"] / demo_ondevice.TRAIN_DIGITS
    print("task: handwritten digits (new 10-class head) for a CNN trained on Fashion-MNIST clothing; "
          f"{r['steps']} training steps at batch 1 ({passes:g} passes over the training digits)")
    print(f"held-out accuracy ({r['eval_samples']} test digits):")
    print(f"  before training (the new head's guess, on the device)        {100 * r['accuracy_before']:5.1f} %")
    print(f"  cloud training + edge deployment (fp32, whole model -> int8) {100 * r['cloud_accuracy']:5.1f} %")
    print(f"  trained on the emulated Cortex-M7 (int8 sparse update)       {100 * r['accuracy_after']:5.1f} %  "
          f"({100 * (r['accuracy_after'] - r['cloud_accuracy']):+.1f} points vs cloud)")
    print(f"prequential accuracy (each digit predicted before the step that learns it), first pass (every digit "
          f"new): device {100 * r['prequential_first_pass']:.1f} %, cloud "
          f"{100 * r['cloud_prequential_first_pass']:.1f} %; whole run: device "
          f"{100 * r['prequential_accuracy']:.1f} %, cloud {100 * r['cloud_prequential_accuracy']:.1f} %")
    print(f"plot of loss and prequential accuracy over the steps: {r['plot']}")
    print(f"memory measured on the firmware: SRAM {r['sram_bytes'] / 1024:.1f} KB of 256 KB "
          f"(.data + .bss + heap + stack high-water), flash {r['flash_bytes'] / 1024:.1f} KB of 1 MB; "
          f"planned training-step peak {r['planned_peak_bytes'] / 1024:.1f} KB within the {r['budget']} budget")
    print(f"cost: {r['instructions_per_step']:,} instructions per training step on the emulator")


if __name__ == "__main__":
    sys.exit(main())
