"""Search for the update scheme with the largest summed contribution within a memory budget.

A candidate scheme is a *genome* ``(k_index, r_1, ..., r_N)``: the classifier is always
trained (weights and bias), ``bias_ks[k_index]`` = biases of that many last convs, and
``r_i`` indexes ``(0,) + ratios`` for candidate conv i (0 = weights frozen). Its accuracy
proxy is the additive model of the contribution analysis::

    proxy = acc(classifier) + bias_gain[k] + sum_i weight_gain[layer_i, ratio_i]

and its memory is the peak of the compiled training step (``compile_training``: planned
arena + trainable weights in RAM, what ``microtrain compile`` reports), asked from a
``MemoryOracle`` that caches it per genome (on disk too, next to the analysis).

``evolutionary_search``: the first population holds, besides random genomes, the biases-only
genome of every measured bias range (the one-gene axis random sampling covers worst); then
tournament selection, uniform crossover, per-gene mutation, elitist survival (feasible before
infeasible, then by proxy; infeasible by memory), seeded. Each generation's candidates are the
children bred plus every one-gene change of the best few (a local search step, so the elite is
refined gene by gene); of these it compiles those a ridge-regression estimate of the peak
(fitted on the schemes compiled so far) predicts to fit with the best proxy.
``random_search``: the baseline, the same sampler and the same number of distinct
evaluated genomes. Both return every evaluated point for the frontier plot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import microtrain.compiler
from microtrain.compiler.pipeline import compile_training
from microtrain.ir.graph import Graph
from microtrain.scheme import UpdateScheme, make_scheme
from microtrain.sparse.backends import WorkerPool
from microtrain.sparse.contribution import ContributionTable, graph_hash, write_atomic

Genome = tuple[int, ...]
MemoryFn = Callable[[list[Genome]], list[int]]


class InfeasibleBudget(ValueError):
    """No scheme fits: ``smallest`` is the peak of the cheapest one (classifier only)."""

    def __init__(self, budget: int, smallest: int) -> None:
        super().__init__(f"no update scheme fits in {budget / 1024:.1f} KB: the smallest feasible budget is "
                         f"{smallest / 1024:.1f} KB ({smallest} bytes, classifier-only update); raise the budget "
                         "to at least that")
        self.budget, self.smallest = budget, smallest


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    bias_ks: tuple[int, ...]
    candidates: tuple[str, ...]
    ratios: tuple[float, ...]
    convs: tuple[str, ...]
    classifier: str

    @staticmethod
    def from_table(table: ContributionTable, classifier: str) -> SearchSpace:
        ratios = sorted({r for (_, r) in table.weight_gain})
        return SearchSpace(tuple(sorted(table.bias_gain)), tuple(table.candidates), tuple(ratios),
                           tuple(table.convs), classifier)

    def smallest(self) -> Genome:
        return (0,) * (1 + len(self.candidates))

    def describe(self, genome: Genome) -> tuple[int, dict[str, float]]:
        """(bias k, {candidate layer: ratio}) of a genome."""
        k = self.bias_ks[genome[0]]
        return k, {layer: self.ratios[r - 1] for layer, r in zip(self.candidates, genome[1:], strict=True) if r}

    def scheme(self, graph: Graph, genome: Genome, name: str = "") -> UpdateScheme:
        k, weights = self.describe(genome)
        biases = list(self.convs[len(self.convs) - k:]) if k else []
        return make_scheme(graph, biases + [self.classifier], {self.classifier: 1.0} | weights, name=name)

    def proxy(self, table: ContributionTable, genome: Genome) -> float:
        k, weights = self.describe(genome)
        return table.classifier_accuracy + table.bias_gain[k] + sum(table.weight_gain[(layer, r)]
                                                                    for layer, r in weights.items())

    def gene_sizes(self) -> list[int]:
        return [len(self.bias_ks)] + [len(self.ratios) + 1] * len(self.candidates)

    def neighbours(self, genome: Genome) -> list[Genome]:
        """Every genome that differs from ``genome`` in exactly one gene."""
        return [genome[:i] + (v,) + genome[i + 1:] for i, size in enumerate(self.gene_sizes())
                for v in range(size) if v != genome[i]]

    def sample(self, rng: np.random.Generator) -> Genome:
        """A random genome: a random density, then each candidate on with that probability."""
        density = rng.random()
        genes = [int(rng.integers(1, len(self.ratios) + 1)) if rng.random() < density else 0
                 for _ in self.candidates]
        return (int(rng.integers(len(self.bias_ks))), *genes)


@dataclasses.dataclass
class SearchResult:
    genome: Genome
    proxy: float
    peak: int
    evaluated: list[tuple[Genome, float, int]]  # every distinct genome: (genome, proxy, peak)
    method: str


# --- memory of a scheme: the compiler's planner ------------------------------------------

def compiled_peak(graph: Graph, scheme: UpdateScheme) -> tuple[int, dict]:
    """Peak bytes and breakdown of the compiled training step of ``scheme``: the full pipeline,
    verifier included, which plans the step's memory once."""
    step = compile_training(graph, scheme)
    return step.plan.peak_bytes, step.plan.peak_breakdown()


def compiler_hash() -> str:
    """Hash of the compiler's source files: cached peaks are stale once the compiler changes."""
    h = hashlib.sha256()
    for path in sorted(Path(microtrain.compiler.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:16]


def _memory_state(arg: tuple[Graph, SearchSpace]) -> tuple[Graph, SearchSpace]:
    return arg


def _memory_job(state: tuple[Graph, SearchSpace], genome: Genome) -> int:
    graph, space = state
    return compiled_peak(graph, space.scheme(graph, genome))[0]


class MemoryOracle:
    """Compiled peak per genome, cached in memory and in ``cache_path`` (JSON), computed in
    parallel on a ``WorkerPool`` when many are asked at once."""

    def __init__(self, graph: Graph, space: SearchSpace, backend: str = "serial", workers: int | None = 1,
                 cache_path: str | Path | None = None) -> None:
        self.graph, self.space = graph, space
        self.cache_path = Path(cache_path) if cache_path else None
        # the cache is valid for this graph, this search space and this compiler's source code
        self.key = graph_hash(graph)[:16] + compiler_hash() + json.dumps(dataclasses.asdict(space))
        self.cache: dict[Genome, int] = {}
        self.compiled = 0
        if self.cache_path and self.cache_path.exists():
            doc = json.loads(self.cache_path.read_text())
            if doc.get("key") == self.key:
                self.cache = {tuple(json.loads(g)): p for g, p in doc["peaks"].items()}
        self.pool = WorkerPool(backend, workers, _memory_state, (graph, space), token=hash(self.key))

    def close(self) -> None:
        self.pool.close()

    def __call__(self, genomes: list[Genome]) -> list[int]:
        todo = [g for g in dict.fromkeys(genomes) if g not in self.cache]
        for i, peak in self.pool.map(_memory_job, todo):
            self.cache[todo[i]] = peak
        self.compiled += len(todo)
        if todo and self.cache_path:
            write_atomic(self.cache_path, {"key": self.key,
                                           "peaks": {json.dumps(list(g)): p for g, p in self.cache.items()}})
        return [self.cache[g] for g in genomes]


# --- the searches -------------------------------------------------------------------------

def _rank(point: tuple[float, int], budget: int) -> tuple[bool, float]:
    proxy, peak = point
    return (True, proxy) if peak <= budget else (False, -float(peak))


class _Evaluator:
    def __init__(self, space: SearchSpace, table: ContributionTable, memory: MemoryFn, budget: int,
                 limit: int) -> None:
        self.space, self.table, self.memory, self.budget, self.limit = space, table, memory, budget, limit
        self.points: dict[Genome, tuple[float, int]] = {}

    def left(self) -> int:
        return self.limit - len(self.points)

    def __call__(self, genomes: Sequence[Genome]) -> list[Genome]:
        new = [g for g in dict.fromkeys(genomes) if g not in self.points][:max(0, self.left())]
        for g, peak in zip(new, self.memory(new), strict=True):
            self.points[g] = (self.space.proxy(self.table, g), peak)
        return new

    def result(self, method: str) -> SearchResult:
        feasible = [g for g, (_, peak) in self.points.items() if peak <= self.budget]
        if not feasible:
            smallest = self.space.smallest()
            peak = self.points[smallest][1] if smallest in self.points else self.memory([smallest])[0]
            raise InfeasibleBudget(self.budget, peak)
        best = max(feasible, key=lambda g: (self.points[g][0], -self.points[g][1]))
        return SearchResult(best, *self.points[best],
                            [(g, p, m) for g, (p, m) in self.points.items()], method)


def check_budget(graph: Graph, classifier: str, budget: int) -> int:
    """Before any analysis: the peak of the cheapest scheme (the classifier alone) must fit.
    Raises InfeasibleBudget with that peak (one compile, about a second), else returns it."""
    from microtrain.compiler.pipeline import compile_training

    smallest = compile_training(graph, make_scheme(graph, [classifier], {classifier: 1.0})).plan.peak_bytes
    if smallest > budget:
        raise InfeasibleBudget(budget, smallest)
    return smallest


def _check_budget(space: SearchSpace, memory: MemoryFn, budget: int) -> None:
    smallest = memory([space.smallest()])[0]
    if smallest > budget:
        raise InfeasibleBudget(budget, smallest)


def _features(space: SearchSpace, genomes: Sequence[Genome]) -> np.ndarray:
    """One-hot of the bias range and of each candidate's ratio level, plus a constant."""
    n_ratio = len(space.ratios) + 1
    x = np.zeros((len(genomes), 1 + len(space.bias_ks) + len(space.candidates) * n_ratio))
    for row, g in enumerate(genomes):
        x[row, 0] = 1.0
        x[row, 1 + g[0]] = 1.0
        for i, r in enumerate(g[1:]):
            x[row, 1 + len(space.bias_ks) + i * n_ratio + r] = 1.0
    return x


def _memory_surrogate(space: SearchSpace, points: dict[Genome, tuple[float, int]]) -> Callable:
    """A ridge-regression estimate of the peak from the genes, fitted on the compiled schemes.

    Only used to choose which children to compile (the compiled peak decides feasibility);
    the real peak is a maximum over time, not a sum, so this is a screen, not a model.
    """
    genomes = list(points)
    x, y = _features(space, genomes), np.array([points[g][1] for g in genomes], dtype=np.float64)
    w = np.linalg.solve(x.T @ x + 1e-3 * np.eye(x.shape[1]) * len(genomes), x.T @ y)
    return lambda gs: _features(space, gs) @ w


def evolutionary_search(space: SearchSpace, table: ContributionTable, memory: MemoryFn, budget: int,
                        evaluations: int = 200, population: int = 20, mutation: float = 0.1, seed: int = 0,
                        progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Evolution with a memory surrogate: each generation breeds many children, and the ones
    compiled are those predicted to fit with the best proxy (plus a random quarter, to explore)."""
    _check_budget(space, memory, budget)
    rng = np.random.default_rng([seed, 1])
    ev = _Evaluator(space, table, memory, budget, evaluations)
    no_weights = [(k,) + space.smallest()[1:] for k in range(len(space.bias_ks))]
    first = list(dict.fromkeys(no_weights[:population]))
    pop = ev(first + [space.sample(rng) for _ in range(population - len(first))])
    n_ratio = len(space.ratios) + 1

    def fitness(g: Genome) -> tuple[bool, float]:
        return _rank(ev.points[g], budget)

    def tournament() -> Genome:
        a, b = (pop[int(i)] for i in rng.integers(len(pop), size=2))
        return a if fitness(a) >= fitness(b) else b

    def breed() -> Genome:
        a = tournament()
        if rng.random() < 0.5:  # uniform crossover with a second parent
            b = tournament()
            a = tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True))
        child = list(a)
        # about `mutation * genes` genes (at least one), mostly a step to a neighbouring ratio / bias
        # range, sometimes a jump anywhere; steps lean towards more update when the parent fits
        fits = ev.points[a][1] <= budget if a in ev.points else True
        hits = [i for i in range(len(child)) if rng.random() < mutation] or [int(rng.integers(len(child)))]
        for i in hits:
            size = len(space.bias_ks) if i == 0 else n_ratio
            if rng.random() < 0.8:
                step = (1 if fits else -1) * (1 if rng.random() < 0.75 else -1)
                child[i] = int(np.clip(child[i] + step, 0, size - 1))
            else:
                child[i] = int(rng.integers(size))
        return tuple(child)

    stale = 0
    while ev.left() > 0 and stale < 20:
        want = min(population, ev.left())
        pool: list[Genome] = []
        for _ in range(population * 40):
            if len(pool) >= want * 8:
                break
            child = breed()
            if child not in ev.points and child not in pool:
                pool.append(child)
        elite = [g for g in pop if ev.points[g][1] <= budget][:3]
        seen = set(pool)
        for g in elite:  # local search: one-gene changes of the best feasible genomes
            for n in space.neighbours(g):
                if n not in ev.points and n not in seen:
                    seen.add(n)
                    pool.append(n)
        predict = _memory_surrogate(space, ev.points)
        est = predict(pool) if pool else np.zeros(0)
        ranked = sorted(range(len(pool)), key=lambda i: (est[i] <= budget, space.proxy(table, pool[i])
                                                         if est[i] <= budget else -est[i]), reverse=True)
        n_explore = want // 4
        chosen = ranked[:want - n_explore]
        rest = ranked[want - n_explore:]
        chosen += [rest[int(i)] for i in rng.permutation(len(rest))[:n_explore]]
        new = ev([pool[i] for i in chosen])
        stale = stale + 1 if not new else 0
        pop = sorted(dict.fromkeys(pop + new), key=fitness, reverse=True)[:population]
        if progress is not None:
            progress(len(ev.points), evaluations)
    return ev.result("evolutionary")


def random_search(space: SearchSpace, table: ContributionTable, memory: MemoryFn, budget: int,
                  evaluations: int = 200, batch: int = 20, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> SearchResult:
    _check_budget(space, memory, budget)
    rng = np.random.default_rng([seed, 2])
    ev = _Evaluator(space, table, memory, budget, evaluations)
    ev([space.smallest()])
    misses = 0
    while ev.left() > 0 and misses < 1000:
        new = ev([space.sample(rng) for _ in range(min(batch, ev.left()))])
        misses = misses + 1 if not new else 0
        if progress is not None:
            progress(len(ev.points), evaluations)
    return ev.result("random")
