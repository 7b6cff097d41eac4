"""Post-training quantization of the default CNN: float vs int8 accuracy on Fashion-MNIST.

    .venv/bin/python benchmarks/ptq.py                      # reference interpreter, full test set
    .venv/bin/python benchmarks/ptq.py --engine batched     # same integers, faster

Rows: the committed float checkpoint (torch, float32); the committed int8 graph (what
MODEL=default loads: min/max calibration on 512 training images); with ``--percentile P``,
the same float model re-quantized with P-percentile calibration. The issue requires int8 within 1 point of
float. Also prints the int8 model's size (``report.inspect``). Appends to docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import numpy as np
import results_md

from microtrain.api.evaluate import predict_int8
from microtrain.data.datasets import load_dataset
from microtrain.data.preprocess import preprocess
from microtrain.frontend.torch_fx import import_torch_module
from microtrain.report.inspect import analyze
from microtrain.zoo import default_cnn as dc

CHECK_SAMPLES = 500


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", choices=("reference", "batched"), default="reference")
    p.add_argument("--limit", type=int, default=None, help="class-balanced subset of the test set")
    p.add_argument("--percentile", type=float, default=None, metavar="P",
                   help="also re-quantize with P-percentile calibration (e.g. 99.99) and evaluate it")
    results_md.add_flag(p)
    args = p.parse_args()

    model = dc.load_default_float()
    committed = dc.load_default_graph()
    test = load_dataset("fashion-mnist", "test", limit=args.limit, seed=0)
    calib = load_dataset("fashion-mnist", "train", limit=committed.meta["calibration"]["samples"], seed=0)
    graphs = [("int8 committed (min/max)", committed)]
    if args.percentile:
        graphs.append((f"int8 percentile {args.percentile}", import_torch_module(
            model, (1, 1, 28, 28), dc.to_float_input(calib.images), method="percentile", percentile=args.percentile,
            input_quant=dc.INPUT_QUANT, preprocess=dc.PREPROCESS)))
    rows = [("float32 (torch)", "-", dc.float_accuracy(model, test.images, test.labels), 0.0)]
    for label, graph in graphs:
        start = time.time()
        x_q = preprocess(test.images, graph)
        preds = predict_int8(graph, x_q, engine=args.engine)
        if args.engine == "batched":  # the batched twin must give the reference interpreter's answers
            n = min(CHECK_SAMPLES, len(x_q))
            if not np.array_equal(predict_int8(graph, x_q[:n], progress=False), preds[:n]):
                raise AssertionError("interp.batched disagrees with the reference interpreter")
        rows.append((label, f"{len(calib)} train images", float(np.mean(preds == test.labels)), time.time() - start))

    size = analyze(committed)["totals"]
    float_acc = rows[0][2]
    lines = [f"| model | calibration | accuracy | delta vs float | eval time ({args.engine}) |",
             "|---|---|---|---|---|"]
    for label, cal, acc, secs in rows:
        delta = "-" if label.startswith("float") else f"{100 * (acc - float_acc):+.2f}"
        lines.append(f"| {label} | {cal} | {100 * acc:.2f} % | {delta} | {secs:.0f} s |")
    params = sum(p.numel() for p in model.parameters())
    size_line = (f"default CNN: {params:,} float parameters ({size['params']:,} int8/int32 constants), "
                 f"flash {size['flash_bytes']:,} B ({size['flash_bytes'] / 1024:.1f} KB: weights, biases, "
                 f"requantization constants), int8 inference peak SRAM {size['peak_sram_bytes']:,} B "
                 f"({size['peak_sram_bytes'] / 1024:.1f} KB, at {size['peak_node']}: live activations, own buffer "
                 f"each), {size['macs']:,} MACs")
    table = "\n".join(lines)
    print(f"Fashion-MNIST test set, {len(test)} images\n{table}\n{size_line}")
    if not args.no_write:
        machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        command = results_md.command("benchmarks/ptq.py")
        results_md.append(
            f"## PTQ of the default CNN on Fashion-MNIST (benchmarks/ptq.py)\n\n"
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {machine}; command: `{command}`; "
            f"test set: {len(test)} images; int8 by the {args.engine} interpreter"
            + (f" (predictions identical to the reference interpreter on the first {CHECK_SAMPLES})"
               if args.engine == "batched" else "") + ".\n\n"
            f"{table}\n\n{size_line}.\n")


if __name__ == "__main__":
    main()
