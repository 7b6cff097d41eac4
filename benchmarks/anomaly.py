"""Anomaly detection that adapts on the device: the MLPerf Tiny autoencoder learns a new machine's
"normal" on the emulated Cortex-M7, and its anomaly AUC before and after.

Data: the SYNTHETIC machine-vibration feature windows of ``microtrain/data/vibration.py`` (seeded;
no real recording). The float autoencoder (640 -> 128 x4 -> 8 -> 128 x4 -> 640, Dense + BatchNorm
+ ReLU) is trained in the cloud on the normal windows of ``--source`` machines, BatchNorm folded,
quantized to int8 (activations calibrated on the same windows). Then it is mounted on a machine it
never heard: the device computes each held-out window's anomaly score (its reconstruction error,
``mt_reconstruction_error``) on QEMU mps2-an500 before adaptation, trains ``--steps`` normal
windows of that machine at batch 1 with the reconstruction loss (``compile --loss mse``: the
weights and biases of the last ``--layers`` layers are trained, the rest stays in flash),
and scores the same windows again. AUC from the scores the device printed (scikit-learn's
roc_auc_score; normal = 0, anomaly = 1); also per fault kind. Memory from the linked ELF.

    .venv/bin/python benchmarks/anomaly.py [--steps 300] [--layers 4] [--machine 100] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import results_md
import torch

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=int, default=6, help="machines the cloud model is trained on (ids 0..N-1)")
    ap.add_argument("--windows", type=int, default=300, help="normal windows per source machine")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--machine", type=int, default=100, help="id of the new machine the device is mounted on")
    ap.add_argument("--steps", type=int, default=300, help="normal windows of the new machine trained on the device")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--layers", type=int, default=4, help="the last N layers' weights and biases train on the device")
    ap.add_argument("--normals", type=int, default=120, help="held-out normal windows")
    ap.add_argument("--per-anomaly", type=int, default=40, help="held-out windows of each fault kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", default="qemu", choices=("qemu", "host"))
    results_md.add_flag(ap)
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    torch.set_num_threads(1)
    t0 = time.time()

    from microtrain.codegen.driver_files import parse_scores, write_driver_files
    from microtrain.codegen.generate_project import generate_project
    from microtrain.compiler.pipeline import CompileOptions, compile_training
    from microtrain.data import vibration as vib
    from microtrain.scheme import make_scheme
    from microtrain.targets import cortex_m7, host
    from microtrain.zoo import ad_autoencoder as ae

    # cloud: the float autoencoder on the source machines' normal windows
    train = np.concatenate([vib.standardise(vib.windows(vib.machine(args.seed, m), args.windows, args.seed))
                            for m in range(args.source)])
    model = ae.train_autoencoder(ae.build_autoencoder(seed=args.seed), train, epochs=args.epochs, seed=args.seed)
    graph = ae.quantize_autoencoder(model, train)
    print(f"cloud: trained on {len(train)} normal windows of {args.source} machines, {args.epochs} epochs "
          f"({time.time() - t0:.0f} s)", file=sys.stderr)

    # the new machine: adaptation windows (normal, early in its run) and a held-out test set (late)
    new = vib.machine(args.seed, args.machine)
    x_adapt = ae.quantize_inputs(graph, vib.standardise(vib.windows(new, args.steps, args.seed + 1)))
    test_f, labels = vib.anomaly_test_set(new, args.seed + 2, args.normals, args.per_anomaly)
    x_test = ae.quantize_inputs(graph, vib.standardise(test_f))

    fcs = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, fcs[-args.layers:], {n: 1.0 for n in fcs[-args.layers:]})
    opts = CompileOptions(loss="mse", lr=args.lr, lr_schedule="cosine", warmup=0.1, steps=args.steps,
                          seed=args.seed)
    step = compile_training(graph, scheme, opts)
    work = Path(tempfile.mkdtemp(prefix="mt_anomaly_"))
    project = generate_project(step, graph, work / "project")
    runner = cortex_m7 if args.target == "qemu" else host
    build = {"elf": cortex_m7.build(project)} if args.target == "qemu" else {"exe": host.build(project)}
    results = {}
    for name, steps in (("before", 0), ("after", args.steps)):
        files = write_driver_files(work / name, x_adapt, np.zeros(len(x_adapt), np.int32), steps=steps, lr=args.lr,
                                   seed=args.seed, x_test=x_test, y_test=labels, eval_count=len(labels))
        res = runner.run(project, files, **build)
        scores = parse_scores(res.stdout)
        if len(scores) != len(labels):
            raise SystemExit(f"the device printed {len(scores)} scores for {len(labels)} windows")
        results[name] = (res, scores)
        print(f"{name}: {steps} steps done ({time.time() - t0:.0f} s)", file=sys.stderr)

    def aucs(scores: np.ndarray) -> list[float]:
        n = args.normals
        out = [vib.auc(scores, labels)]
        for k in range(len(vib.ANOMALIES)):
            sel = np.r_[0:n, n + k * args.per_anomaly:n + (k + 1) * args.per_anomaly]
            out.append(vib.auc(scores[sel], labels[sel]))
        return out

    before, after = aucs(results["before"][1]), aucs(results["after"][1])
    losses = results["after"][0].losses
    tenth = max(1, len(losses) // 10)
    rows = [f"| anomaly AUC, all faults | {before[0]:.3f} | {after[0]:.3f} |"]
    rows += [f"| AUC, {kind} | {b:.3f} | {a:.3f} |" for kind, b, a in zip(vib.ANOMALIES, before[1:], after[1:],
                                                                             strict=True)]
    rows.append(f"| median score of held-out normal windows | {np.median(results['before'][1][:args.normals]):.4f} "
                f"| {np.median(results['after'][1][:args.normals]):.4f} |")
    table = "\n".join([f"| on the device ({args.target}) | before adaptation | after |", "|---|---:|---:|", *rows])
    mem = getattr(results["after"][0], "memory", None) or {}
    facts = [f"trained on the device: weights and biases of the last {args.layers} layers "
             f"({', '.join(fcs[-args.layers:])}); "
             f"planned peak {step.plan.peak_bytes / 1024:.1f} KB (arena {step.plan.arena_bytes / 1024:.1f} KB + "
             f"trained tensors {step.plan.trainable_bytes / 1024:.1f} KB)",
             f"training loss (reconstruction MSE), mean of the first and last tenth of the {len(losses)} steps: "
             f"{np.mean(losses[:tenth]):.4f} -> {np.mean(losses[-tenth:]):.4f}"]
    if mem:
        facts.append(f"measured on the firmware: SRAM {mem['sram_bytes'] / 1024:.1f} KB of 256 KB, "
                     f"flash {mem['flash_bytes'] / 1024:.1f} KB of 1 MB")
    cost = getattr(results["after"][0], "step_instructions", None)
    if cost:
        facts.append(f"{int(np.median(cost)):,} instructions per training step (QEMU instruction count)")
    print(table)
    print("\n".join(facts))
    if not args.no_write:
        cmd = results_md.command("benchmarks/anomaly.py", argv)
        section = f"""

## Anomaly detection adapting on the device: the MLPerf Tiny autoencoder on a new machine (benchmarks/anomaly.py)

Command: `{cmd.strip()}` (code at {commit}); date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC,
{time.time() - t0:.0f} s; machine: {results_md.machine()}; target `{args.target}`.
Data: SYNTHETIC machine-vibration windows (`microtrain/data/vibration.py`, seed {args.seed}: 5 frames x 128
log-mel bands; each machine its own spectrum and drift; faults: bearing, imbalance, looseness). Cloud: the
autoencoder 640 -> 128 x4 -> 8 -> 128 x4 -> 640 trained in float on {len(train)} normal windows of machines
0..{args.source - 1} ({args.epochs} epochs, Adam), BatchNorm folded, int8. Device: machine {args.machine}, never
seen; {args.steps} of its normal windows trained at batch 1 with the reconstruction loss (`--loss mse`,
cosine schedule from lr {args.lr}, stochastic rounding); the anomaly score of a window is its reconstruction
error computed by the device (`mt_reconstruction_error`). Held-out: {args.normals} normal windows and
{args.per_anomaly} of each fault, from late in the machine's run.

{table}

{chr(10).join("- " + f for f in facts)}
"""
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
