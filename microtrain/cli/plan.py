"""``microtrain plan MODEL --data NAME --budget 160KB --out scheme.json``: the best sparse
update scheme that fits a memory budget, with its evidence.

1. Contribution analysis (``sparse/contribution.py``): short fine-tuning runs with the
   simulator on a class-balanced subset of the data, in parallel (``--workers``, or a Ray
   cluster with ``--backend ray``), each cached in the analysis folder (``--analysis``):
   rerunning resumes an interrupted analysis and reuses a finished one.
2. Search (``sparse/search.py``): evolutionary search, and random search as the baseline at
   the same number of evaluated schemes, for the largest summed contribution whose compiled
   peak (``compile_training``: arena + trained tensors in RAM, what ``microtrain compile``
   reports for the same model and ``--classes``) is within the budget.
3. Output: the scheme file, its predicted gain, its exact memory and breakdown (compiled
   again with the full, verified pipeline) and the frontier plot.

``--resolution`` only lowers the resolution of the analysis runs (time); memory is always
that of the model at its own input resolution, as ``compile`` sees it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
from pathlib import Path

from microtrain.cli.common import UserError, emit, log


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "plan",
        help="find the sparse update scheme with the best accuracy proxy within a memory budget",
        description="Measure the contribution of each bias range and each (layer, ratio) weight update by short "
                    "fine-tuning runs on DATA, then search (evolutionary, random search as baseline) for the "
                    "scheme with the largest summed contribution whose compiled peak memory fits --budget. "
                    "Writes the scheme JSON (--out) and a frontier plot.",
    )
    p.add_argument("model", metavar="MODEL",
                   help="'default', mcunet-5fps | mbv2-w0.35 | proxyless-w0.3, a zoo .pkl or a microtrain .json")
    p.add_argument("--data", required=True, metavar="NAME",
                   help="fashion-mnist, digits, a folder of class sub-folders or an .npz (see `microtrain eval`)")
    p.add_argument("--budget", required=True, metavar="SIZE",
                   help="peak SRAM of the compiled training step, e.g. 160KB or 163840 (KB = 1024 bytes)")
    p.add_argument("--classes", type=int, default=None, metavar="N",
                   help="use the first N classes of the data (a new N-way head when the model's differs)")
    p.add_argument("--resolution", type=int, default=None, metavar="R",
                   help="input resolution of the analysis runs (default: the model's); memory is always planned "
                        "at the model's own resolution")
    p.add_argument("--limit", type=int, default=500, metavar="N", help="training images per analysis run "
                   "(class-balanced subset, default 500)")
    p.add_argument("--val-limit", "--test-limit", dest="test_limit", type=int, default=300, metavar="N",
                   help="held-out images scoring each run, taken from the training split apart from the --limit "
                        "images, so that the test split stays unseen by the choice (default 300)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per analysis run (default 2)")
    p.add_argument("--lr", default="auto", metavar="LR",
                   help="learning rate of the analysis runs (SGD+QAS), or 'auto' (default): the one of "
                        "0.001/0.003/0.01/0.03 whose base run scores best on the held-out images")
    p.add_argument("--candidates", type=int, default=12, metavar="N",
                   help="weight-update candidates: the last N convs (default 12)")
    p.add_argument("--evaluations", type=int, default=200, metavar="N",
                   help="schemes compiled per search (evolutionary and random each, default 200)")
    p.add_argument("--population", type=int, default=20, help="evolutionary population (default 20)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="worker processes (default: CPU count)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local process pool (default) or a Ray cluster (RAY_ADDRESS, else a local instance)")
    p.add_argument("--analysis", default=None, metavar="DIR",
                   help="analysis folder to reuse or resume (default: next to --out, named after the inputs)")
    p.add_argument("--out", default="scheme.json", metavar="FILE", help="scheme file to write (default scheme.json)")
    p.add_argument("--plot", default=None, metavar="PNG", help="frontier plot (default: <out>.frontier.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the runs, the head and the searches")
    p.set_defaults(func=run)
    return p


def _bar(desc: str):
    from tqdm import tqdm

    state: dict = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, file=sys.stderr, leave=True)
        bar = state["bar"]
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def layer_rows(graph, scheme, step) -> list[dict]:
    """One row per updated layer: bias, weight ratio and channels, bytes of its tensors in RAM."""
    rows = []
    for node in graph.weighted_nodes():
        w = scheme.weight_update(node.name)
        if node.name not in scheme.bias_layers and w is None:
            continue
        out_c = graph.tensors[node.inputs[1]].shape[0]
        ram = sum(step.plan.trainable.get(t, 0) for t in node.inputs[1:3])
        rows.append({"layer": node.name, "bias": node.name in scheme.bias_layers,
                     "ratio": w.ratio if w else 0.0, "channels": len(w.channels) if w else 0,
                     "out_channels": out_c, "ram_bytes": ram})
    return rows


def run(args: argparse.Namespace) -> int:
    from microtrain.cli.compile import parse_bytes
    from microtrain.compiler.pipeline import compile_training
    from microtrain.models import ModelNotFound
    from microtrain.report.plots import plot_frontier
    from microtrain.report.tables import Column, fmt_kb, render
    from microtrain.sparse import search
    from microtrain.sparse.contribution import LR_CANDIDATES, AnalysisConfig, choose_lr, prepare, run_analysis
    from microtrain.sparse.search import InfeasibleBudget, MemoryOracle, SearchSpace

    budget = parse_bytes(args.budget)
    for name in ("limit", "test_limit", "epochs", "candidates", "evaluations", "population"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-').replace('test-', 'val-')} must be >= 1")
    if args.lr == "auto":
        lr = None
    else:
        try:
            lr = float(args.lr)
        except ValueError:
            raise UserError(f"--lr {args.lr!r}: give a number such as 0.01, or 'auto'") from None
        if not lr > 0:
            raise UserError(f"--lr {args.lr}: the learning rate must be > 0")
    cfg = AnalysisConfig(epochs=args.epochs, lr=lr or 0.01, seed=args.seed, candidates=args.candidates)
    try:
        data = prepare(args.model, args.data, args.limit, args.test_limit, args.resolution, args.classes, cfg)
        # The memory graph: the same model and head at the model's own resolution (what `compile` sees).
        mem_graph = prepare(args.model, args.data, 1, 1, None, args.classes, cfg).graph if args.resolution \
            else data.graph
    except (ModelNotFound, FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    out = Path(args.out)
    if lr is None:  # the fingerprint below depends on the rate, so the analysis folder is named without it
        tag = hashlib.sha256(dataclasses.replace(data, config=dataclasses.replace(cfg, lr=0.0)).fingerprint()
                             .encode()).hexdigest()[:8]
    else:
        tag = hashlib.sha256(data.fingerprint().encode()).hexdigest()[:8]
    analysis = Path(args.analysis) if args.analysis else out.with_name(f"{out.stem}.analysis-{tag}")
    if lr is None:
        log(f"choosing the analysis learning rate on the held-out images ({', '.join(map(str, LR_CANDIDATES))})")
        try:
            lr, lr_scores = choose_lr(data, analysis, backend=args.backend, workers=args.workers)
        except RuntimeError as e:
            raise UserError(str(e)) from None
        log("learning rate " + ", ".join(f"{k:g}: {100 * v:.1f} %" for k, v in lr_scores.items()) + f" -> {lr:g}")
        cfg = dataclasses.replace(cfg, lr=lr)
        data = dataclasses.replace(data, config=cfg)
    d = data.description
    log(f"analysis: {len(data.jobs())} runs of {cfg.epochs} epochs on {d['train_samples']} training images of "
        f"{args.data}, scored on {d['held_out_samples']} held out from them, at {d['resolution']}x{d['resolution']} "
        f"-> {analysis}")
    try:
        table, stats = run_analysis(data, analysis, args.backend, args.workers, _bar("analysis runs"))
    except RuntimeError as e:
        raise UserError(str(e)) from None
    log(f"analysis: {stats['cached']} runs reused, {len(stats['computed'])} computed in {stats['wall_seconds']} s")

    space = SearchSpace.from_table(table, data.classifier())
    oracle = MemoryOracle(mem_graph, space, args.backend, args.workers, analysis / "peaks.json")
    try:
        evo = search.evolutionary_search(space, table, oracle, budget, args.evaluations, args.population,
                                         seed=args.seed, progress=_bar("evolutionary search"))
        rnd = search.random_search(space, table, oracle, budget, args.evaluations, args.population, seed=args.seed,
                            progress=_bar("random search"))
    except InfeasibleBudget as e:
        raise UserError(str(e)) from None
    finally:
        oracle.close()
    best = evo if evo.proxy >= rnd.proxy else rnd
    scheme = space.scheme(mem_graph, best.genome, name=f"plan:{args.model}:{args.data}:{budget // 1024}KB")
    step = compile_training(mem_graph, scheme)  # full pipeline with the verifier after every pass
    peak, breakdown = step.plan.peak_bytes, step.plan.peak_breakdown()
    if peak != best.peak or peak > budget:
        raise RuntimeError(f"internal error: search peak {best.peak} != compiled peak {peak} (budget {budget})")
    scheme.save(out)
    plot = Path(args.plot) if args.plot else out.with_name(f"{out.stem}.frontier.png")
    plot_frontier([(m, p) for _, p, m in evo.evaluated], (best.peak, best.proxy), budget, plot,
                  f"{args.model} on {args.data}: {budget / 1024:.0f} KB budget",
                  baseline=[(m, p) for _, p, m in rnd.evaluated])
    bias_k, _ = space.describe(best.genome)
    rows = layer_rows(mem_graph, scheme, step)
    doc = {"scheme_file": str(out), "plot": str(plot), "analysis": str(analysis), "budget_bytes": budget,
           "peak_bytes": peak, "arena_bytes": step.plan.arena_bytes, "trainable_bytes": step.plan.trainable_bytes,
           "breakdown": breakdown, "classifier_accuracy": table.classifier_accuracy,
           "predicted_accuracy": best.proxy, "predicted_gain": best.proxy - table.classifier_accuracy,
           "bias_layers": bias_k, "layers": rows, "method": best.method,
           "search": {"evolutionary": {"proxy": evo.proxy, "peak_bytes": evo.peak, "evaluations": len(evo.evaluated)},
                      "random": {"proxy": rnd.proxy, "peak_bytes": rnd.peak, "evaluations": len(rnd.evaluated)}},
           "analysis_stats": stats, "analysis_setup": table.description, "analysis_lr": cfg.lr}

    def human() -> None:
        cols = [Column("layer"), Column("bias"), Column("weights", align=">"), Column("channels", align=">"),
                Column("RAM KB", align=">", fmt=fmt_kb)]
        body = [[r["layer"], "yes" if r["bias"] else "", f"{r['ratio']:g}" if r["ratio"] else "",
                 f"{r['channels']}/{r['out_channels']}" if r["channels"] else "", r["ram_bytes"]] for r in rows]
        print(render(cols, body, totals=["trained tensors", "", "", "", step.plan.trainable_bytes]))
        plan = step.plan
        print(f"\npeak memory {peak} B ({peak / 1024:.1f} KB) of budget {budget / 1024:.1f} KB = arena "
              f"{plan.arena_bytes / 1024:.1f} KB + trained tensors in RAM {plan.trainable_bytes / 1024:.1f} KB")
        print("at the peak: " + ", ".join(f"{k} {v / 1024:.1f} KB" for k, v in breakdown.items()
                                          if k != "at_step" and v))
        print(f"predicted accuracy {100 * best.proxy:.1f} % = classifier-only {100 * table.classifier_accuracy:.1f} % "
              f"+ gain {100 * (best.proxy - table.classifier_accuracy):.1f} points (additive proxy, "
              f"{d['train_samples']} images, {cfg.epochs} epochs, {d['resolution']}x{d['resolution']})")
        print(f"search: evolutionary {100 * evo.proxy:.1f} % vs random {100 * rnd.proxy:.1f} % at "
              f"{len(evo.evaluated)} / {len(rnd.evaluated)} compiled schemes")
        print(f"wrote {out} and {plot}; the same peak: microtrain compile {args.model} --scheme {out} "
              f"--classes {d['classes']} --out DIR")

    emit(args, doc, human)
    return 0
