"""A trained .tflite learns a new task on the emulated Cortex-M7: the three commands of docs/byom.md.

The Fashion-MNIST CNN of tests/fixtures/tflite (trained by TensorFlow, converted with full-integer
quantization) gets a new 10-class head and is taught scikit-learn's handwritten digits:

    microtrain plan    fashion_mnist_cnn.tflite --data digits --classes 10 --budget B --out scheme.json
    microtrain compile fashion_mnist_cnn.tflite --classes 10 --scheme scheme.json --target cortex-m7 --out proj
    microtrain run     proj --target qemu --data digits --steps S --eval N --export trained.tflite

Held-out accuracy (the digits test split, never seen in planning or training) is measured on QEMU
before training (0 steps: the new head's initial guess) and after; then TFLite Micro runs the
exported trained.tflite on the same test images and must give microtrain's predictions. Then the
MLPerf Tiny VWW and KWS shapes with a new head train a sparse step 20 times on QEMU: their SRAM,
flash and instructions per step. Prints the tables and appends them to docs/RESULTS.md with the
commands and the machine.

    .venv/bin/python benchmarks/tflite_transfer.py [--budget 64KB] [--steps 1400] [--lr 0.01] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import results_md

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests" / "fixtures" / "tflite" / "fashion_mnist_cnn.tflite"


def microtrain(*args: str) -> dict:
    cmd = [sys.executable, "-m", "microtrain.cli", *args, "--json"]
    print("$ microtrain " + " ".join(args), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"microtrain {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def tflm_predictions(path: Path, x: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(str(path))
    preds = []
    for i in range(len(x)):
        interp.set_input(x[i:i + 1], 0)
        interp.invoke()
        preds.append(int(np.argmax(interp.get_output(0).reshape(-1))))
    return np.array(preds)


def microtrain_predictions(project: Path, weights: Path, x: np.ndarray) -> np.ndarray:
    """The classes microtrain's trained model predicts: the project's graph with the device's
    trained tensors, run by the batched reference interpreter."""
    from microtrain.codegen.driver_files import read_weights
    from microtrain.interp.batched import infer_batch
    from microtrain.ir import load_graph

    graph = load_graph(project / "model")
    tensors = dict(graph.tensors)
    for name, arr in read_weights(project, weights).items():
        tensors[name] = tensors[name].with_data(arr)
    return np.argmax(infer_batch(graph.replace(tensors=tensors), x).reshape(len(x), -1), axis=1)


def _scheme_text(plan: dict) -> str:
    rows = plan["layers"]
    weights = ", ".join(f"{r['layer']} {r['channels']}/{r['out_channels']} channels" for r in rows if r["ratio"])
    biases = sum(1 for r in rows if r["bias"])
    return (f"biases of {biases} layers; weights: {weights or 'none'}; planned peak {plan['peak_bytes'] / 1024:.1f} "
            f"KB of the {plan['budget_bytes'] / 1024:.0f} KB budget")


def mlperf_steps(tmp: Path, steps: int) -> list[str]:
    """VWW and KWS with a new 10-class head and a sparse scheme (biases of the last 3 layers, the
    last layer's weights, half the channels of the one before, a quarter of the one before that),
    compiled for the Cortex-M7 and run on QEMU: SRAM, flash, instructions per step."""
    import microtrain as mt
    from microtrain.scheme import make_scheme

    rows = []
    for name in ("vww_mobilenet_v1_025", "kws_ds_cnn"):
        graph = mt.prepare(str(MODEL.with_name(f"{name}.tflite")), classes=10, seed=1).graph
        layers = [n.name for n in graph.weighted_nodes()]
        scheme = make_scheme(graph, layers[-3:], {layers[-1]: 1.0, layers[-2]: 0.5, layers[-3]: 0.25})
        step = mt.compile(graph, scheme, tmp / name, target="cortex-m7")
        run = mt.run(tmp / name, "digits", steps=steps, target="qemu", lr=0.05)
        m = run.memory
        rows.append(f"| {name} | {graph.tensors['input'].shape[1:]} | {step.peak_bytes / 1024:.1f} KB | "
                    f"{m['sram_bytes'] / 1024:.1f} KB | {m['flash_bytes'] / 1024:.1f} KB | "
                    f"{run.cost['train_step_instructions_median']:,} | {run.losses[0]:.3f} -> {run.losses[-1]:.3f} |")
        print(rows[-1], file=sys.stderr)
    return ["| model | input | planned peak | SRAM on QEMU | flash | instructions / step | loss first -> last |",
            "|---|---|---|---|---|---|---|"] + rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="64KB", help="SRAM budget of the planned scheme (default 64KB)")
    ap.add_argument("--steps", type=int, default=1400, help="training steps on the device (default 1400)")
    ap.add_argument("--lr", type=float, default=0.01, help="learning rate of the device run (default 0.01)")
    results_md.add_flag(ap)
    args = ap.parse_args()
    from microtrain.data.datasets import load_dataset
    from microtrain.data.preprocess import preprocess
    from microtrain.ir import load_graph

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plan = microtrain("plan", str(MODEL), "--data", "digits", "--classes", "10", "--budget", args.budget,
                          "--out", str(tmp / "scheme.json"))
        comp = microtrain("compile", str(MODEL), "--classes", "10", "--scheme", str(tmp / "scheme.json"),
                          "--target", "cortex-m7", "--out", str(tmp / "proj"))
        test = load_dataset("digits", "test")
        n = len(test)
        before = microtrain("run", str(tmp / "proj"), "--target", "qemu", "--data", "digits", "--steps", "0",
                            "--eval", str(n), "--workdir", str(tmp / "before"),
                            "--export", str(tmp / "untrained.tflite"))
        after = microtrain("run", str(tmp / "proj"), "--target", "qemu", "--data", "digits", "--steps",
                           str(args.steps), "--lr", str(args.lr), "--eval", str(n), "--workdir", str(tmp / "after"),
                           "--export", str(tmp / "trained.tflite"))
        # TFLM on the exported file, on the images `run --eval` used (its seeded order of the test split)
        project_graph = load_graph(tmp / "proj" / "model")
        order = np.random.default_rng(1).permutation(n)[:n]
        x = preprocess(test.images[order], project_graph)
        tflm = tflm_predictions(tmp / "trained.tflite", x)
        tflm_acc = float(np.mean(tflm == test.labels[order]))
        ours = microtrain_predictions(tmp / "proj", tmp / "after" / "mt_weights.bin", x)
        if not np.array_equal(tflm, ours):
            raise SystemExit(f"TFLM on trained.tflite and microtrain's trained model disagree on "
                             f"{int(np.sum(tflm != ours))} of {n} images")
        mlperf = mlperf_steps(tmp, 20)
    mem = after["memory"]
    rows = [("held-out accuracy before training (new head)", f"{100 * before['accuracy']:.1f} %"),
            (f"held-out accuracy after {args.steps} steps on QEMU", f"{100 * after['accuracy']:.1f} %"),
            ("TFLM on the exported trained.tflite, same images", f"{100 * tflm_acc:.1f} % (the same "
             f"prediction as microtrain's trained model on {n} of {n} images)"),
            ("scheme found by `plan`", _scheme_text(plan)),
            ("SRAM on QEMU (.data + .bss + heap + stack high-water)", f"{mem['sram_bytes'] / 1024:.1f} KB"),
            ("flash", f"{mem['flash_bytes'] / 1024:.1f} KB"),
            ("instructions per training step (QEMU icount, median)",
             f"{after['cost']['train_step_instructions_median']:,}"),
            ("test images", str(n)), ("wall time of the whole benchmark", f"{time.time() - t0:.0f} s")]
    text = "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    text += ("\n\nThe MLPerf Tiny visual-wake-words and keyword-spotting shapes (fixtures not trained for a task), "
             "each with a new 10-class head and a sparse scheme (biases of the last 3 layers; weights of the last, "
             "half the channels of the one before, a quarter of the one before that), trained 20 steps on digits "
             "on QEMU (tests/test_tflite_training.py checks these steps equal the host, the reference and the "
             "simulator):\n\n" + "\n".join(mlperf))
    print(text)
    del comp
    if not args.no_write:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
        section = (f"\n## A trained .tflite learns a new task on the Cortex-M7 ({datetime.date.today()})\n\n"
                   f"Command: `.venv/bin/python benchmarks/tflite_transfer.py --budget {args.budget} --steps "
                   f"{args.steps} --lr {args.lr}`; machine: {platform.machine()}, nproc {nproc}. The model is "
                   "`tests/fixtures/tflite/fashion_mnist_cnn.tflite` (a CNN trained on Fashion-MNIST by TensorFlow, "
                   "full-integer quantized by its converter), given a new 10-class head and taught scikit-learn's "
                   "digits with the three commands of docs/byom.md (`plan`, `compile --target cortex-m7`, `run "
                   "--target qemu --export trained.tflite`), batch 1 on the emulated Cortex-M7 (256 KB SRAM / 1 MB "
                   "flash). Accuracies are on the digits test split, which planning and training never see.\n\n"
                   f"{text}\n")
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
