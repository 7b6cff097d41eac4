"""The QAS experiment (paper Table 1) on data we have: which int8 optimizer reaches fp32?

mcunet-5fps (ImageNet int8 zoo model) with a fresh 10-class head, the last two blocks and
the classifier trained (weights and biases; ``last-blocks:2``), on Fashion-MNIST and
scikit-learn digits resized to ``--resolution``. Rows: fp32 SGD-M (the float model of
``sim/float_model.py``), int8 SGD-M, int8 Adam, int8 SGD-M+QAS, int8 SGD+QAS, each with
nearest and stochastic rounding, the float-shadow simulation (SGD+QAS, the paper's own
simulation), and bias-only / classifier-only for reference. Every row sweeps the same
learning-rate grid; the lr is chosen on a validation split held out of the training
subset, and the test accuracy at that lr is reported.

The frozen prefix (everything before block 12) never changes, so its output is computed
once per image and cached (``Trainer.cache``).

``--grad-dtypes fp32 int16 int8`` runs each int8 row also with integer error tensors in the
backward (``runtime/grad_quant.py``); those rows are labelled "<row>, int8 errors".

    nice -n 10 .venv/bin/python benchmarks/qas_experiment.py \\
        --dataset digits --zero-head --out-json /tmp/qd.json --no-write
    .venv/bin/python benchmarks/qas_experiment.py --merge /tmp/qas_*.json
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import results_md
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from microtrain.data.datasets import load_dataset  # noqa: E402
from microtrain.data.preprocess import preprocess  # noqa: E402
from microtrain.frontend.heads import new_head  # noqa: E402
from microtrain.frontend.mcu_zoo import import_zoo_model  # noqa: E402
from microtrain.models import zoo_model_path  # noqa: E402
from microtrain.scheme import make_scheme  # noqa: E402
from microtrain.sim.resolution import with_resolution  # noqa: E402
from microtrain.sparse.presets import preset  # noqa: E402
from microtrain.train.divergence import TrainingDiverged  # noqa: E402
from microtrain.train.loop import TrainConfig, Trainer  # noqa: E402

# (label, optimizer, rounding, scheme)
ROWS = [
    ("fp32 SGD-M", "fp32-sgdm", "-", "last2"),
    ("fp32 SGD (no momentum, reference for SGD+QAS)", "fp32-sgd", "-", "last2"),
    ("int8 SGD-M", "sgdm", "nearest", "last2"),
    ("int8 SGD-M", "sgdm", "stochastic", "last2"),
    ("int8 Adam", "adam", "nearest", "last2"),
    ("int8 Adam", "adam", "stochastic", "last2"),
    ("int8 SGD-M+QAS", "sgdm-qas", "nearest", "last2"),
    ("int8 SGD-M+QAS", "sgdm-qas", "stochastic", "last2"),
    ("int8 SGD+QAS", "sgd-qas", "nearest", "last2"),
    ("int8 SGD+QAS", "sgd-qas", "stochastic", "last2"),
    ("float-shadow SGD+QAS (paper's simulation)", "float-shadow", "-", "last2"),
    ("bias-only, int8 SGD+QAS", "sgd-qas", "stochastic", "bias"),
    ("classifier-only, int8 SGD+QAS", "sgd-qas", "stochastic", "classifier"),
]


def zero_head(graph):
    """The new head with int8 weights 0 (its quantization kept): initial logits are 0, so the
    first steps train the head instead of fighting a random one on large features."""
    classifier = graph.node([n.name for n in graph.weighted_nodes()][-1])
    tensors = dict(graph.tensors)
    for name in classifier.inputs[1:]:
        tensors[name] = tensors[name].with_data(np.zeros_like(tensors[name].data))
    return graph.replace(tensors=tensors)


def schemes(graph):
    last2 = preset("last-blocks:2", graph)
    classifier = [n.name for n in graph.weighted_nodes()][-1]
    bias = make_scheme(graph, last2.bias_layers, {classifier: 1.0}, name="bias-only")
    return {"last2": last2, "bias": bias, "classifier": preset("classifier-only", graph)}


def run_dataset(args) -> dict:
    torch.set_num_threads(args.threads)
    graph = with_resolution(new_head(import_zoo_model(zoo_model_path("mcunet-5fps")), 10, seed=0), args.resolution)
    if args.zero_head:
        graph = zero_head(graph)
    sch = schemes(graph)
    train = load_dataset(args.dataset, "train", limit=args.train_limit + args.val_limit, seed=0)
    test = load_dataset(args.dataset, "test", limit=args.test_limit, seed=0)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(train))
    val_idx, tr_idx = perm[:args.val_limit], perm[args.val_limit:]
    x_train, x_test = preprocess(train.images, graph), preprocess(test.images, graph)
    caches: dict[int, dict] = {}  # prefix cut -> cached prefix outputs (train, test)
    results = json.loads(Path(args.out_json).read_text()) if args.out_json and Path(args.out_json).exists() else {}
    results.setdefault("runs", [])
    done = {(r["optimizer"], r["rounding"], r["scheme"], r["lr"], r.get("seed", 0), r.get("grad_dtype", "fp32"))
            for r in results["runs"]}
    for seed, (label, opt, rounding, scheme_key), gd, lr in itertools.product(args.seeds, ROWS, args.grad_dtypes,
                                                                              args.lrs):
        if args.rows and label not in args.rows:
            continue
        if args.roundings and rounding not in args.roundings:
            continue
        if gd != "fp32" and opt.startswith("fp32"):
            continue  # the float baseline has no int8 backward to quantize
        if (opt, rounding, scheme_key, lr, seed, gd) in done:
            continue
        label = row_label(label, gd)
        t = time.time()
        cfg = TrainConfig(opt, lr=lr, epochs=args.epochs, batch_size=args.batch_size,
                          rounding=rounding if rounding != "-" else "nearest", seed=seed, grad_dtype=gd)
        scheme = sch[scheme_key]
        tr = Trainer(graph, scheme, cfg)
        if tr.sim.cut not in caches:
            t0 = time.time()
            caches[tr.sim.cut] = {"train": tr.cache(x_train), "test": tr.cache(x_test)}
            print(f"[{args.dataset}] prefix cached for {len(x_train) + len(x_test)} images in "
                  f"{time.time() - t0:.0f} s", file=sys.stderr)
        cache = caches[tr.sim.cut]
        sub = {k: v[torch.from_numpy(tr_idx)] for k, v in cache["train"].items()}
        val = {k: v[torch.from_numpy(val_idx)] for k, v in cache["train"].items()}
        diverged = None
        try:
            tr.fit(sub, train.labels[tr_idx])
        except TrainingDiverged as e:  # scored as it stood when the watch stopped it, and marked
            diverged = str(e)
        row = {"label": label, "optimizer": opt, "rounding": rounding, "scheme": scheme_key, "lr": lr, "seed": seed,
               "grad_dtype": gd,
               "val_accuracy": tr.evaluate(val, train.labels[val_idx]),
               "test_accuracy": tr.evaluate(cache["test"], test.labels),
               "train_loss": tr.history[-1]["train_loss"] if tr.history else float("nan"),
               "seconds": time.time() - t, "diverged": diverged}
        results["runs"].append(row)
        print(f"[{args.dataset}] {label:45s} {rounding:10s} lr={lr:<6g} seed {seed} val {row['val_accuracy']:.3f} "
              f"test {row['test_accuracy']:.3f} loss {row['train_loss']:.3f} ({row['seconds']:.0f} s)"
              f"{' DIVERGED' if diverged else ''}",
              file=sys.stderr, flush=True)
        if args.out_json:
            results.update(dataset=args.dataset, config=config_of(args), train_size=len(tr_idx),
                           val_size=len(val_idx), test_size=len(test))
            Path(args.out_json).write_text(json.dumps(results, indent=1))
    return results


def row_label(label: str, grad_dtype: str) -> str:
    return label if grad_dtype == "fp32" else f"{label}, {grad_dtype} errors"


def config_of(args) -> dict:
    return {"resolution": args.resolution, "epochs": args.epochs, "batch_size": args.batch_size, "lrs": args.lrs,
            "train_limit": args.train_limit, "val_limit": args.val_limit, "test_limit": args.test_limit}


def best_per_row(runs: list[dict]) -> dict:
    """Per (row, rounding): the seed-0 run with the best validation accuracy (the chosen lr)."""
    best: dict = {}
    for r in runs:
        if r.get("seed", 0) != 0:
            continue
        key = (r["label"], r["rounding"])
        if key not in best or r["val_accuracy"] > best[key]["val_accuracy"]:
            best[key] = r
    return best


def table(all_results: list[dict]) -> str:
    datasets = [r["dataset"] for r in all_results]
    bests = [best_per_row(r["runs"]) for r in all_results]
    head = "| row | rounding | " + " | ".join(f"{d} test acc % (lr)" for d in datasets) + " |"
    lines = [head, "|" + "---|" * (2 + len(datasets))]
    for (label, _opt, rounding, _s), gd in itertools.product(ROWS, ("fp32", "int16", "int8")):
        label = row_label(label, gd)
        cells = []
        for b in bests:
            r = b.get((label, rounding))
            cells.append(f"{100 * r['test_accuracy']:.1f} ({r['lr']:g}{', diverged' if r.get('diverged') else ''})"
                         if r else "-")
        if any(c != "-" for c in cells):
            lines.append(f"| {label} | {rounding} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_table(all_results: list[dict]) -> str:
    """Rows run with several seeds: test accuracy at the chosen lr, mean and each seed."""
    lines = ["| row | rounding | dataset | lr | seeds | test acc % per seed | mean |", "|---|---|---|---|---|---|---|"]
    for res in all_results:
        for (label, rounding), best in best_per_row(res["runs"]).items():
            key = (label, rounding, best["lr"])
            same = sorted((r for r in res["runs"] if (r["label"], r["rounding"], r["lr"]) == key),
                          key=lambda r: r.get("seed", 0))
            if len(same) < 2:
                continue
            accs = [100 * r["test_accuracy"] for r in same]
            lines.append(f"| {label} | {rounding} | {res['dataset']} | {best['lr']:g} | "
                         f"{','.join(str(r.get('seed', 0)) for r in same)} | {' / '.join(f'{a:.1f}' for a in accs)} | "
                         f"{np.mean(accs):.1f} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--train-limit", type=int, default=400)
    p.add_argument("--val-limit", type=int, default=100)
    p.add_argument("--test-limit", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lrs", type=float, nargs="+", default=[0.001, 0.003, 0.01, 0.03])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (data order, rounding)")
    p.add_argument("--rows", nargs="*", help="only these row labels")
    p.add_argument("--roundings", nargs="*", help="only these roundings of the rows (nearest, stochastic, -)")
    p.add_argument("--grad-dtypes", nargs="+", default=["fp32"], choices=["fp32", "int16", "int8"],
                   help="error tensors of the backward to run each int8 row with (default fp32)")
    p.add_argument("--zero-head", action="store_true", help="start the new head from zero weights")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-json", help="results file (runs already in it are skipped: the sweep resumes)")
    p.add_argument("--merge", nargs="+", help="print the table of these result files instead of running")
    results_md.add_flag(p)
    p.add_argument("--command", default=None, help="the command lines to record in docs/RESULTS.md")
    args = p.parse_args()
    if args.merge:
        by_dataset: dict[str, dict] = {}  # several files of one dataset (e.g. extra lrs) are pooled
        for f in args.merge:
            r = json.loads(Path(f).read_text())
            if r["dataset"] in by_dataset:
                merged = by_dataset[r["dataset"]]
                merged["runs"] += r["runs"]
                merged["config"]["lrs"] = sorted(set(merged["config"]["lrs"]) | set(r["config"]["lrs"]))
            else:
                by_dataset[r["dataset"]] = r
        all_results = list(by_dataset.values())
    else:
        all_results = [run_dataset(args)]
    text = table(all_results)
    seeds = seed_table(all_results)
    if seeds:
        text += "\n\nSeed check (data order and stochastic rounding; the lr chosen with seed 0):\n\n" + seeds
    print(text)
    if not args.no_write:
        cfgs = "; ".join(f"{r['dataset']}: {r['train_size']} train / {r['val_size']} val (lr choice) / "
                         f"{r['test_size']} test images, config {json.dumps(r['config'])}" for r in all_results)
        section = (f"## QAS experiment (paper Table 1), {datetime.date.today()}\n\n"
                   f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared). mcunet-5fps + new 10-class "
                   f"head, last two blocks + classifier trained (weights and biases), batch as configured, "
                   f"cosine schedule with 10 % warm-up, momentum 0.9, one seed. {cfgs}. Accuracy is on the "
                   f"test subset at the lr with the best validation accuracy.\n\n"
                   f"Commands:\n\n```\n{args.command or ' '.join(sys.argv)}\n```\n\n{text}\n")
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
