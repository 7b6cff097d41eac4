"""Validation of `microtrain plan`: do searched sparse schemes beat the baselines at equal memory?

For each zoo model and dataset: contribution analysis (cached), then for budgets from the
smallest feasible (classifier-only) up to 256 KB, evolutionary and random search (same
number of compiled schemes), then fine-tune with the simulator: the searched scheme,
classifier-only, bias-only (all biases), the biases of the last k convs and the last k
layers (weights + biases), k the largest fitting each budget, and optionally full update.
Memory is the compiled peak of the training step at the model's own 128x128 input (what
`microtrain compile` reports); the fine-tuning runs at a reduced resolution (--resolution)
for time. Also measured: serial vs parallel analysis wall time for a few runs, with equal
numbers. Appends a section to docs/RESULTS.md and plots to docs/img/.

    nice -n 10 .venv/bin/python benchmarks/sparse_validation.py            # full configuration
    nice -n 10 .venv/bin/python benchmarks/sparse_validation.py --quick    # reduced (see --help)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import results_md

import microtrain
from microtrain.data.datasets import load_dataset
from microtrain.data.preprocess import preprocess
from microtrain.report.plots import plot_accuracy_vs_memory
from microtrain.scheme import UpdateScheme, make_scheme
from microtrain.sparse import search as S
from microtrain.sparse.backends import WorkerPool
from microtrain.sparse.contribution import AnalysisConfig, graph_hash, map_jobs, prepare, run_analysis, write_atomic

ROOT = Path(__file__).resolve().parent.parent

KB = 1024


@dataclasses.dataclass
class FTState:
    graph: object
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    epochs: int
    lr: float


def _ft_init(state: FTState) -> FTState:
    return state


def _ft_run(state: FTState, scheme_doc: dict) -> float:
    """Fine-tune one scheme (SGD+QAS, stochastic rounding, batch 8, cosine) -> test accuracy."""
    from microtrain.train.loop import TrainConfig, Trainer

    trainer = Trainer(state.graph, UpdateScheme.from_dict(scheme_doc), TrainConfig(epochs=state.epochs, lr=state.lr))
    history = trainer.fit(trainer.cache(state.x_train), state.y_train, trainer.cache(state.x_test), state.y_test)
    return history[-1]["test_accuracy"]


def finetune_all(state: FTState, schemes: dict[str, UpdateScheme], cache_dir: Path, workers: int) -> dict[str, float]:
    """Accuracy per scheme name; results cached on disk by content (graph, data, epochs, scheme)."""
    base = hashlib.sha256((graph_hash(state.graph) + str(state.x_train.shape) + str(state.epochs) + str(state.lr)
                           + hashlib.sha256(state.x_train.tobytes() + state.x_test.tobytes()).hexdigest()
                           ).encode()).hexdigest()
    keys = {n: hashlib.sha256((base + json.dumps(s.to_dict() | {"name": ""}, sort_keys=True)).encode()).hexdigest()[:20]
            for n, s in schemes.items()}
    out: dict[str, float] = {}
    for n, k in keys.items():
        p = cache_dir / f"{k}.json"
        if p.exists():
            out[n] = json.loads(p.read_text())["accuracy"]
    todo = sorted({keys[n]: n for n in schemes if n not in out}.values())
    with WorkerPool("local", workers, _ft_init, state, token=int(base[:12], 16)) as pool:
        for i, acc in pool.map(_ft_run, [schemes[n].to_dict() for n in todo]):
            write_atomic(cache_dir / f"{keys[todo[i]]}.json", {"scheme": todo[i], "accuracy": acc})
            print(f"    fine-tuned {todo[i]}: {100 * acc:.1f} %", file=sys.stderr)
    for n, k in keys.items():
        out[n] = json.loads((cache_dir / f"{k}.json").read_text())["accuracy"]
    return out


def largest_fitting(peaks: dict[int, int], budget: int) -> int | None:
    fit = [k for k, p in peaks.items() if p <= budget]
    return max(fit) if fit else None


def peaks_by_k(mem_graph, convs: list[str], cls: str, weights: bool, limit: int, cache: dict) -> dict[int, int]:
    """Compiled peak of 'last k layers' (weights) or 'biases of the last k convs' for k = 1.. until > limit."""
    out = {}
    for k in range(1, len(convs) + 1):
        key = f"{'lastk' if weights else 'biask'}:{k}"
        if key not in cache:
            layers = convs[len(convs) - (k - 1 if weights else k):] if (k > 1 or not weights) else []
            w = {n: 1.0 for n in layers} if weights else {}
            scheme = make_scheme(mem_graph, layers + [cls], w | {cls: 1.0})
            cache[key] = S.compiled_peak(mem_graph, scheme)[0]
        out[k] = cache[key]
        if cache[key] > limit:
            break
    return out


def baseline_scheme(graph, convs: list[str], cls: str, kind: str, k: int) -> UpdateScheme:
    if kind == "last-k":  # weights + biases of the last k layers, the classifier counting as one
        layers = convs[len(convs) - (k - 1):] if k > 1 else []
        return make_scheme(graph, layers + [cls], {n: 1.0 for n in layers} | {cls: 1.0}, name=f"last-k:{k}")
    layers = convs[len(convs) - k:] if k else []
    return make_scheme(graph, layers + [cls], {cls: 1.0}, name=f"bias-k:{k}")


def serial_vs_parallel(data, out: Path, n_jobs: int, workers: int) -> dict:
    """Wall time of the same analysis runs serially and on the process pool; the numbers must agree."""
    jobs = [j for j in data.jobs() if j.kind == "weight"][:n_jobs]
    res = {}
    for name, w in (("serial", 1), ("parallel", workers)):
        t0 = time.time()
        got = {r["label"]: r["accuracy"] for r in map_jobs(data, None, jobs, "local", w)}
        res[name] = {"wall_seconds": round(time.time() - t0, 1), "accuracy": got}
    res["same_numbers"] = res["serial"]["accuracy"] == res["parallel"]["accuracy"]
    res["jobs"] = len(jobs)
    return res


def run_pair(model: str, data_name: str, a: argparse.Namespace, out: Path, rows: list, notes: dict) -> None:
    print(f"== {model} on {data_name}", file=sys.stderr)
    cfg = AnalysisConfig(epochs=a.analysis_epochs, lr=a.lr, candidates=a.candidates)
    graph = microtrain.load_model(model)
    data = prepare(graph, data_name, a.analysis_limit, a.test_limit, a.resolution, None, cfg, name=model)
    mem_graph = prepare(graph, data_name, 1, 1, None, None, cfg).graph
    tag = f"{model}-{data_name}"
    t0 = time.time()
    table, stats = run_analysis(data, out / "analysis" / tag, "local", a.workers,
                                lambda n, t: print(f"  analysis {n}/{t}", file=sys.stderr))
    notes.setdefault("analysis", {})[tag] = {"jobs": stats["jobs"], "computed": len(stats["computed"]),
                                             "wall_seconds": round(time.time() - t0, 1),
                                             "classifier_accuracy": table.classifier_accuracy}
    if a.parallel_check and "serial_vs_parallel" not in notes:
        notes["serial_vs_parallel"] = serial_vs_parallel(data, out, a.parallel_check, a.workers) | {"pair": tag}
        print(f"  serial vs parallel: {notes['serial_vs_parallel']}", file=sys.stderr)
    space = S.SearchSpace.from_table(table, data.classifier())
    oracle = S.MemoryOracle(mem_graph, space, "local", a.workers, out / "analysis" / tag / "peaks.json")
    smallest = oracle([space.smallest()])[0]
    top = max(256 * KB, smallest)
    budgets = sorted({int(np.ceil(b / KB)) * KB for b in np.linspace(smallest, top, a.budgets)})
    convs, cls = data.convs(), data.classifier()
    pcache_path = out / "analysis" / tag / "baseline_peaks.json"
    pcache = json.loads(pcache_path.read_text()) if pcache_path.exists() else {}
    if pcache.get("compiler") != S.compiler_hash():  # peaks of another compiler version are stale
        pcache = {"compiler": S.compiler_hash()}
    lastk = peaks_by_k(mem_graph, convs, cls, True, top, pcache)
    biask = peaks_by_k(mem_graph, convs, cls, False, top, pcache)
    for key, scheme in (("full", make_scheme(mem_graph, convs + [cls], {n: 1.0 for n in convs + [cls]})),
                        ("bias-only", make_scheme(mem_graph, convs + [cls], {cls: 1.0}))):
        if key not in pcache:
            pcache[key] = S.compiled_peak(mem_graph, scheme)[0]
    write_atomic(pcache_path, pcache)

    schemes: dict[str, UpdateScheme] = {"classifier-only": baseline_scheme(data.graph, convs, cls, "bias-k", 0),
                                        "bias-only": make_scheme(data.graph, convs + [cls], {cls: 1.0})}
    peaks = {"classifier-only": smallest, "bias-only": pcache["bias-only"], "full": pcache["full"]}
    if a.full:
        schemes["full"] = make_scheme(data.graph, convs + [cls], {n: 1.0 for n in convs + [cls]})
    per_budget = []
    for b in budgets:
        # evolutionary vs random at equal evaluations, over several seeds; the scheme fine-tuned is
        # what `microtrain plan --seed 0` returns (the better of its two searches)
        evos = [S.evolutionary_search(space, table, oracle, b, a.evaluations, a.population, seed=s)
                for s in range(a.search_seeds)]
        rnds = [S.random_search(space, table, oracle, b, a.evaluations, a.population, seed=s)
                for s in range(a.search_seeds)]
        evo, rnd = evos[0], rnds[0]
        best = evo if evo.proxy >= rnd.proxy else rnd
        seeds = [(e.proxy, r.proxy) for e, r in zip(evos, rnds, strict=True)]
        name = f"searched@{b // KB}"
        schemes[name] = space.scheme(data.graph, best.genome)
        peaks[name] = best.peak
        entry = {"budget": b, "searched": name, "evo_proxy": evo.proxy, "random_proxy": rnd.proxy, "seeds": seeds,
                 "evaluations": len(evo.evaluated), "evo_peak": evo.peak, "scheme": space.describe(best.genome)}
        for kind, table_k in (("last-k", lastk), ("bias-k", biask)):
            k = largest_fitting(table_k, b)
            if k is not None:
                n = f"{kind}:{k}"
                schemes[n] = baseline_scheme(data.graph, convs, cls, kind, k)
                peaks[n] = table_k[k]
                entry[kind] = n
        per_budget.append(entry)
        print(f"  budget {b / KB:.0f} KB: evo {100 * evo.proxy:.1f} vs random {100 * rnd.proxy:.1f} "
              f"({len(evo.evaluated)} schemes each), peak {best.peak / KB:.1f} KB", file=sys.stderr)
    oracle.close()
    # fine-tuning: training images from the train split, scored on the test split, which the
    # analysis (scored on images held out of the train split) never saw
    graph = prepare(microtrain.load_model(model), data_name, 1, 1, a.resolution, None, cfg).graph
    train = load_dataset(data_name, "train", limit=a.train_limit, seed=0)
    test = load_dataset(data_name, "test", limit=a.eval_limit, seed=0)
    state = FTState(graph, preprocess(train.images, graph), train.labels.astype(np.int64),
                    preprocess(test.images, graph), test.labels.astype(np.int64), a.epochs, a.lr)
    acc = finetune_all(state, schemes, out / "finetune", a.workers)
    for e in per_budget:
        rows.append({"model": model, "data": data_name, "budget_kb": e["budget"] / KB,
                     "searched": acc[e["searched"]], "searched_kb": peaks[e["searched"]] / KB,
                     "last_k": e.get("last-k"), "last_k_acc": acc.get(e.get("last-k")),
                     "last_k_kb": peaks[e["last-k"]] / KB if "last-k" in e else None,
                     "bias_k": e.get("bias-k"), "bias_k_acc": acc.get(e.get("bias-k")),
                     "classifier": acc["classifier-only"], "classifier_kb": smallest / KB,
                     "evo_proxy": e["evo_proxy"], "random_proxy": e["random_proxy"], "evaluations": e["evaluations"],
                     "seeds": e["seeds"],
                     "scheme": e["scheme"]})
    notes.setdefault("fixed", {})[tag] = {"bias-only": (acc["bias-only"], pcache["bias-only"] / KB),
                                          "full": (acc.get("full"), pcache["full"] / KB)}
    series = {"searched (this work)": [(peaks[e["searched"]], acc[e["searched"]]) for e in per_budget],
              "last-k layers": sorted({(peaks[e["last-k"]], acc[e["last-k"]]) for e in per_budget if "last-k" in e}),
              "biases of last k": sorted({(peaks[e["bias-k"]], acc[e["bias-k"]]) for e in per_budget
                                          if "bias-k" in e}),
              "classifier-only": [(smallest, acc["classifier-only"])],
              "bias-only (all)": [(pcache["bias-only"], acc["bias-only"])]}
    if "full" in acc:
        series["full update"] = [(pcache["full"], acc["full"])]
    img = ROOT / "docs" / "img" / f"sparse_validation_{tag}.png"
    plot_accuracy_vs_memory(series, img, f"{model} on {data_name} ({a.resolution}x{a.resolution} fine-tuning)",
                            budgets)
    notes.setdefault("plots", []).append(str(img.relative_to(ROOT)))


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt(v, pct=True) -> str:
    return "-" if v is None else (f"{100 * v:.1f}" if pct else f"{v:.1f}")


def report(rows: list, notes: dict, a: argparse.Namespace, cmd: str, elapsed: float) -> str:
    lines = [f"## Sparse update planning: validation ({datetime.date.today()})", "",
             f"Command: `{cmd}`  ", f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared with other "
             f"jobs), wall {elapsed / 60:.0f} min.  ",
             f"Setup: analysis runs = {a.analysis_epochs} epoch(s) on {a.analysis_limit} training images, scored on "
             f"{a.test_limit} other training images held out, candidates = last {a.candidates} convs; fine-tuning = "
             f"{a.epochs} epoch(s) on {a.train_limit} training images, scored on up to {a.eval_limit} images of the "
             f"test split (digits has 359); both at {a.resolution}x{a.resolution} input (SGD+QAS, "
             f"lr {a.lr}, batch 8, stochastic rounding, new 10-way head). Memory = compiled peak of the training "
             "step at the model's 128x128 input (arena + trained tensors in RAM, as `microtrain compile`); KB = 1024 "
             f"B. Searches: {a.evaluations} compiled schemes each, seed 0. Code at commit {_commit()}.", "",
             "| model | data | budget KB | searched % (KB) | last-k layers % (KB) | biases last k % | "
             "classifier-only % (KB) | proxy evo / random |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['data']} | {r['budget_kb']:.0f} | {fmt(r['searched'])} "
                     f"({r['searched_kb']:.0f}) | {fmt(r['last_k_acc'])} {r['last_k'] or ''} "
                     f"({fmt(r['last_k_kb'], False)}) | {fmt(r['bias_k_acc'])} {r['bias_k'] or ''} | "
                     f"{fmt(r['classifier'])} ({r['classifier_kb']:.0f}) | "
                     f"{fmt(r['evo_proxy'])} / {fmt(r['random_proxy'])} |")
    lines += ["", f"Evolutionary vs random search on the accuracy proxy (summed contributions), "
              f"{a.evaluations} compiled schemes per search, seeds 0-{a.search_seeds - 1}: mean proxy, and per seed "
              "whether evolutionary found a larger / the same / a smaller proxy.", "",
              "| model | data | budget KB | evolutionary mean % | random mean % | evo better / same / worse |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        ev, rn = np.array(r["seeds"]).T
        better, same = int(np.sum(ev > rn + 1e-9)), int(np.sum(np.abs(ev - rn) <= 1e-9))
        lines.append(f"| {r['model']} | {r['data']} | {r['budget_kb']:.0f} | {100 * ev.mean():.2f} | "
                     f"{100 * rn.mean():.2f} | {better} / {same} / {len(ev) - better - same} |")
    lines.append("")
    for tag, f in notes.get("fixed", {}).items():
        full = f"{fmt(f['full'][0])} %" if f["full"][0] is not None else "not run (--full)"
        lines.append(f"- {tag}: bias-only (all biases) {fmt(f['bias-only'][0])} % at {f['bias-only'][1]:.0f} KB; "
                     f"full update {full} at {f['full'][1]:.0f} KB.")
    sp = notes.get("serial_vs_parallel")
    if sp:
        lines.append(f"- Analysis wall time, {sp['jobs']} runs of {sp['pair']}: serial "
                     f"{sp['serial']['wall_seconds']} s, {a.workers} workers {sp['parallel']['wall_seconds']} s "
                     f"(includes worker start-up); identical accuracies: {sp['same_numbers']}.")
    for tag, an in notes.get("analysis", {}).items():
        lines.append(f"- Analysis {tag}: {an['jobs']} runs ({an['computed']} computed now), "
                     f"{an['wall_seconds']} s wall, classifier-only accuracy {fmt(an['classifier_accuracy'])} %.")
    lines += [""] + [f"![{Path(p).stem}]({Path(p).relative_to('docs')})" for p in notes.get("plots", [])] + [""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mcunet-5fps", "mbv2-w0.35"])
    p.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--analysis-limit", type=int, default=500)
    p.add_argument("--val-limit", "--test-limit", dest="test_limit", type=int, default=300,
                   help="held-out training images scoring each analysis run")
    p.add_argument("--analysis-epochs", type=int, default=2)
    p.add_argument("--candidates", type=int, default=12)
    p.add_argument("--train-limit", type=int, default=2000)
    p.add_argument("--eval-limit", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--budgets", type=int, default=5)
    p.add_argument("--evaluations", type=int, default=200)
    p.add_argument("--population", type=int, default=20)
    p.add_argument("--search-seeds", type=int, default=5, help="seeds of the evolutionary vs random comparison")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--parallel-check", type=int, default=6, help="runs timed serial vs parallel (0: skip)")
    p.add_argument("--full", action="store_true", help="also fine-tune the full update (slow)")
    p.add_argument("--quick", action="store_true", help="reduced: 40x40, 300/200 analysis images, 1 epoch, "
                   "8 candidates, 1000/500 fine-tuning images, 2 epochs, 4 budgets, 100 evaluations")
    p.add_argument("--out", default=str(ROOT / "build" / "sparse_validation"))
    results_md.add_flag(p)
    p.add_argument("--report-only", action="store_true", help="write the report from --out/results.json (after an "
                   "interrupted run) and append it")
    a = p.parse_args()
    if a.quick:  # the reduced values, for the options not given on the command line
        quick = {"resolution": 40, "analysis_limit": 300, "test_limit": 200, "analysis_epochs": 1, "candidates": 8,
                 "train_limit": 1000, "eval_limit": 500, "epochs": 2, "budgets": 4, "evaluations": 100}
        given = {action.dest for action in p._actions for arg in sys.argv[1:]
                 if any(arg == o or arg.startswith(o + "=") for o in action.option_strings)}
        for name, value in quick.items():
            if name not in given:
                setattr(a, name, value)
    out = Path(a.out)
    rows: list = []
    notes: dict = {}
    t0 = time.time()
    if a.report_only:
        doc = json.loads((out / "results.json").read_text())
        rows, notes, t0 = doc["rows"], doc["notes"], time.time() - doc.get("elapsed", 0)
    else:
        for data_name in a.datasets:
            for model in a.models:
                run_pair(model, data_name, a, out, rows, notes)
                write_atomic(out / "results.json", {"rows": rows, "notes": notes, "elapsed": time.time() - t0})
    cmd = results_md.command("benchmarks/sparse_validation.py", prefix="nice -n 10 .venv/bin/python")
    text = report(rows, notes, a, cmd.replace(" --report-only", ""), time.time() - t0)
    print(text)
    if not a.no_write:
        results_md.append(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
