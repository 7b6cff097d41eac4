"""``plan``: the best sparse update scheme that fits a memory budget, with its evidence.

1. Contribution analysis (``sparse/contribution.py``): short fine-tuning runs with the simulator
   on a class-balanced subset of the data, in parallel (``workers``, or a Ray cluster with
   ``backend="ray"``), each cached in the analysis folder: a repeated call resumes an
   interrupted analysis and reuses a finished one.
2. Search (``sparse/search.py``): evolutionary search, and random search as the baseline at the
   same number of evaluated schemes, for the largest summed contribution whose compiled peak
   (what ``compile`` reports for the same model and ``classes``) is within the budget.
3. The scheme file, its predicted gain, its exact memory and breakdown (compiled again with the
   full, verified pipeline) and the frontier plot.

``classes``: use the first N classes of the data; the model gets a new N-way head when its own
has another number of classes (the analysis fits the head to the data). ``resolution`` only
lowers the resolution of the analysis runs (time); memory is always that of the model at its
own input resolution, as ``compile`` sees it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from microtrain.api.checks import check_lr
from microtrain.api.messages import log
from microtrain.api.models import InputRange, ModelSpec, load_model
from microtrain.compiler.pipeline import CompiledStep, compile_training
from microtrain.errors import UserError
from microtrain.ir import Graph
from microtrain.report.plots import plot_frontier
from microtrain.scheme import UpdateScheme
from microtrain.sparse import search
from microtrain.sparse.contribution import (
    DEFAULT_LIMITS,
    LR_CANDIDATES,
    AnalysisConfig,
    choose_lr,
    diverged_rates,
    prepare,
    run_analysis,
)
from microtrain.sparse.search import InfeasibleBudget, MemoryOracle, SearchSpace
from microtrain.units import parse_size

Progress = Callable[[str], Callable[[int, int], None] | None]
"""A progress bar factory: a description -> an update(done, total) callback (or None)."""


@dataclasses.dataclass
class PlanResult:
    """The chosen scheme and its evidence; ``doc`` is the document ``plan --json`` prints."""

    scheme: UpdateScheme
    doc: dict[str, Any]
    step: CompiledStep
    description: dict[str, Any]
    """The analysis data: train_samples, held_out_samples, classes, resolution."""
    epochs: int

    @property
    def peak_bytes(self) -> int:
        return int(self.doc["peak_bytes"])


def layer_rows(graph: Graph, scheme: UpdateScheme, step: CompiledStep) -> list[dict]:
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


def plan(model: ModelSpec, data: str, budget: str | int, *, classes: int | None = None,
         resolution: int | None = None, limit: int | None = None, test_limit: int | None = None, epochs: int = 2,
         lr: float | str = "auto", candidates: int = 12, evaluations: int = 200, population: int = 20,
         workers: int | None = None, backend: str = "local", analysis: str | Path | None = None,
         out: str | Path = "scheme.json", plot: str | Path | None = None, seed: int = 0,
         progress: Progress | None = None, input_range: InputRange = None) -> PlanResult:
    """Measure the contributions on ``data``, search the best scheme within ``budget`` (bytes, or
    text such as 160KB), write it to ``out`` and the frontier plot (see the module doc).

    ``limit``/``test_limit``: training and held-out images of each analysis run; None for both
    takes 500 + 300, or a 5:3 split of a smaller training split (said in the log)."""
    budget = parse_size(budget, "budget")
    for name, value in (("limit", limit), ("val_limit", test_limit), ("epochs", epochs), ("candidates", candidates),
                        ("evaluations", evaluations), ("population", population)):
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    rate = _learning_rate(lr)
    bar = progress or (lambda desc: None)
    cfg = AnalysisConfig(epochs=epochs, lr=rate or 0.01, seed=seed, candidates=candidates)
    graph = load_model(model, input_range)
    name = str(model)
    try:
        data_ = prepare(graph, data, limit, test_limit, resolution, classes, cfg, name=name)
        # The memory graph: the same model and head at the model's own resolution (what `compile` sees).
        mem_graph = prepare(graph, data, 1, 1, None, classes, cfg).graph if resolution else data_.graph
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    try:  # an infeasible budget is said now, not after the whole analysis
        search.check_budget(mem_graph, data_.classifier(), budget)
    except InfeasibleBudget as e:
        raise UserError(str(e)) from None
    out = Path(out)
    if rate is None:  # the fingerprint below depends on the rate, so the analysis folder is named without it
        tag = hashlib.sha256(dataclasses.replace(data_, config=dataclasses.replace(cfg, lr=0.0)).fingerprint()
                             .encode()).hexdigest()[:8]
    else:
        tag = hashlib.sha256(data_.fingerprint().encode()).hexdigest()[:8]
    folder = Path(analysis) if analysis else out.with_name(f"{out.stem}.analysis-{tag}")
    if rate is None:
        log(f"choosing the analysis learning rate on the held-out images ({', '.join(map(str, LR_CANDIDATES))})")
        try:
            rate, lr_scores = choose_lr(data_, folder, backend=backend, workers=workers,
                                        progress=bar("learning-rate runs"))
        except RuntimeError as e:
            raise UserError(str(e)) from None
        diverged = diverged_rates(data_, folder)
        log("learning rate " + ", ".join(f"{k:g}: {100 * v:.1f} %" + (" (diverged)" if k in diverged else "")
                                         for k, v in lr_scores.items()) + f" -> {rate:g}")
        cfg = dataclasses.replace(cfg, lr=rate)
        data_ = dataclasses.replace(data_, config=cfg)
    d = data_.description
    if limit is None and test_limit is None and (d["train_samples"], d["held_out_samples"]) != DEFAULT_LIMITS:
        log(f"{data} has fewer than {sum(DEFAULT_LIMITS)} training images: the analysis uses all of them, "
            f"{d['train_samples']} to train and {d['held_out_samples']} held out (set --limit/--val-limit to choose)")
    log(f"analysis: {len(data_.jobs())} runs of {cfg.epochs} epochs on {d['train_samples']} training images of "
        f"{data}, scored on {d['held_out_samples']} held out from them, at {d['resolution']}x{d['resolution']} "
        f"-> {folder}")
    try:
        table, stats = run_analysis(data_, folder, backend, workers, bar("analysis runs"))
    except RuntimeError as e:
        raise UserError(str(e)) from None
    log(f"analysis: {stats['cached']} runs reused, {len(stats['computed'])} computed in {stats['wall_seconds']} s")
    if stats["diverged"]:
        log(f"note: {len(stats['diverged'])} analysis run(s) diverged at lr {cfg.lr:g} and count with the accuracy "
            f"they had when stopped: {', '.join(stats['diverged'][:6])}")

    space = SearchSpace.from_table(table, data_.classifier())
    oracle = MemoryOracle(mem_graph, space, backend, workers, folder / "peaks.json")
    try:
        evo = search.evolutionary_search(space, table, oracle, budget, evaluations, population, seed=seed,
                                         progress=bar("evolutionary search"))
        rnd = search.random_search(space, table, oracle, budget, evaluations, population, seed=seed,
                                   progress=bar("random search"))
    except InfeasibleBudget as e:
        raise UserError(str(e)) from None
    finally:
        oracle.close()
    best = evo if evo.proxy >= rnd.proxy else rnd
    scheme = space.scheme(mem_graph, best.genome, name=f"plan:{name}:{data}:{budget // 1024}KB")
    step = compile_training(mem_graph, scheme)  # full pipeline with the verifier after every pass
    peak, breakdown = step.plan.peak_bytes, step.plan.peak_breakdown()
    if peak != best.peak or peak > budget:
        raise RuntimeError(f"internal error: search peak {best.peak} != compiled peak {peak} (budget {budget})")
    scheme.save(out)
    plot = Path(plot) if plot else out.with_name(f"{out.stem}.frontier.png")
    plot_frontier([(m, p) for _, p, m in evo.evaluated], (best.peak, best.proxy), budget, plot,
                  f"{name} on {data}: {budget / 1024:.0f} KB budget", baseline=[(m, p) for _, p, m in rnd.evaluated])
    bias_k, _ = space.describe(best.genome)
    doc = {"scheme_file": str(out), "plot": str(plot), "analysis": str(folder), "budget_bytes": budget,
           "peak_bytes": peak, "arena_bytes": step.plan.arena_bytes, "trainable_bytes": step.plan.trainable_bytes,
           "breakdown": breakdown, "classifier_accuracy": table.classifier_accuracy,
           "predicted_accuracy": best.proxy, "predicted_gain": best.proxy - table.classifier_accuracy,
           "bias_layers": bias_k, "layers": layer_rows(mem_graph, scheme, step), "method": best.method,
           "search": {"evolutionary": {"proxy": evo.proxy, "peak_bytes": evo.peak, "evaluations": len(evo.evaluated)},
                      "random": {"proxy": rnd.proxy, "peak_bytes": rnd.peak, "evaluations": len(rnd.evaluated)}},
           "analysis_stats": stats, "analysis_setup": table.description, "analysis_lr": cfg.lr}
    return PlanResult(scheme, doc, step, d, cfg.epochs)


def _learning_rate(lr: float | str) -> float | None:
    """A positive rate, or None for 'auto'."""
    if lr == "auto":
        return None
    try:
        rate = float(lr)
    except (TypeError, ValueError):
        raise UserError(f"--lr {lr!r}: give a number such as 0.01, or 'auto'") from None
    return check_lr(rate)
