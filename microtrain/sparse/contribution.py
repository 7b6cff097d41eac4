"""Contribution analysis: how much each part of a sparse update is worth on the user's data.

Every measurement is one independent fine-tuning *job* with the simulator (``train/loop``),
scored by the test accuracy after the last epoch:

    classifier          classifier weights + bias (the accuracy everything is measured from)
    bias:k              + biases of the last k convs (k in ``bias_ks``)       -> gain over classifier
    weight:layer@r      + biases of the last ``base_k`` convs + weights of one candidate conv,
                        a ratio r in {1/8, 1/4, 1/2, 1} of its output channels -> gain over bias:base_k

Candidate layers are the last ``candidates`` convs (classifier excluded); ``base_k`` is the
smallest measured bias k covering them all, so the base run already backpropagates to every
candidate and a weight job only adds that layer's weight gradient. The default bias range
goes from the candidates' depth down to the whole network (half, three quarters, all convs):
deep bias updates are cheap in trained bytes and can fit a budget that weights do not.

Each job is keyed by a content hash of (model tensors, data subset, hyper-parameters, job
spec) and its result is written atomically (temp file + rename) as ``jobs/<key>.json`` in
the analysis folder when it finishes: rerunning an interrupted analysis runs only the jobs
without a result, and a changed model, subset or hyper-parameter gets new keys.

Runs are deterministic: seeded shuffling, counter-based stochastic rounding, and one torch
thread per worker, so serial, process-pool and Ray runs give the same numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from microtrain.data.datasets import balanced_indices, load_dataset, subset
from microtrain.data.preprocess import preprocess
from microtrain.frontend.heads import new_head
from microtrain.ir.graph import Graph
from microtrain.scheme import UpdateScheme, make_scheme
from microtrain.sim.resolution import with_resolution
from microtrain.sim.simulator import Simulator
from microtrain.sparse.backends import WorkerPool
from microtrain.train.divergence import TrainingDiverged
from microtrain.train.loop import TrainConfig, Trainer

RATIOS = (0.125, 0.25, 0.5, 1.0)
TABLE_FILE = "contributions.json"


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
    """Hyper-parameters of every job (all part of the job keys)."""

    epochs: int = 2
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd-qas"
    rounding: str = "stochastic"
    seed: int = 0
    candidates: int = 12        # the last N convs (classifier excluded) are weight candidates
    bias_ks: tuple[int, ...] = ()  # empty: a default range up to 2 x candidates
    ratios: tuple[float, ...] = RATIOS


@dataclasses.dataclass(frozen=True)
class Job:
    kind: str            # "classifier" | "bias" | "weight"
    k: int = 0           # bias: last k convs; weight: the base bias k
    layer: str = ""      # weight: the candidate conv
    ratio: float = 0.0   # weight: kept fraction of output channels

    @property
    def label(self) -> str:
        if self.kind == "weight":
            return f"weight:{self.layer}@{self.ratio:g}"
        return f"bias:{self.k}" if self.kind == "bias" else "classifier"


@dataclasses.dataclass
class AnalysisData:
    """What every job needs: the (resized, new-head) graph and the preprocessed subsets."""

    graph: Graph
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    config: AnalysisConfig
    description: dict  # model, data, subset sizes, resolution: reported with the table

    def convs(self) -> list[str]:
        return [n.name for n in self.graph.weighted_nodes()][:-1]

    def classifier(self) -> str:
        return self.graph.weighted_nodes()[-1].name

    def candidates(self) -> list[str]:
        convs = self.convs()
        return convs[len(convs) - min(self.config.candidates, len(convs)):]

    def bias_ks(self) -> list[int]:
        n_convs = len(self.convs())
        if self.config.bias_ks:
            ks = set(self.config.bias_ks)
        else:
            n = max(1, self.config.candidates)
            ks = {round(n * f) for f in (0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)}
            ks |= {round(n_convs * f) for f in (0.5, 0.75, 1.0)}
        ks |= {0, len(self.candidates())}
        return sorted(k for k in ks if 0 <= k <= n_convs)

    def base_k(self) -> int:
        """The bias range under the weight jobs: the smallest measured k covering every candidate."""
        return min(k for k in self.bias_ks() if k >= len(self.candidates()))

    def deepest_k(self) -> int:
        return max(self.bias_ks())

    def jobs(self) -> list[Job]:
        out = [Job("classifier")] + [Job("bias", k) for k in self.bias_ks() if k > 0]
        base = self.base_k()
        out += [Job("weight", base, layer, r) for layer in self.candidates() for r in self.config.ratios]
        return out

    def scheme(self, job: Job) -> UpdateScheme:
        convs, cls = self.convs(), self.classifier()
        biases = convs[len(convs) - job.k:] if job.k else []
        weights = {cls: 1.0}
        if job.kind == "weight":
            weights[job.layer] = job.ratio
        return make_scheme(self.graph, biases + [cls], weights, name=job.label)

    # --- content hashes ---------------------------------------------------------------
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(graph_hash(self.graph).encode())
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str(a.shape).encode() + str(a.dtype).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(json.dumps(dataclasses.asdict(self.config), sort_keys=True).encode())
        return h.hexdigest()

    def job_key(self, job: Job, fingerprint: str | None = None) -> str:
        spec = json.dumps(dataclasses.asdict(job), sort_keys=True)
        return hashlib.sha256(((fingerprint or self.fingerprint()) + spec).encode()).hexdigest()[:20]


def graph_hash(graph: Graph) -> str:
    """Content hash of a graph: structure, quantization and every constant's bytes."""
    h = hashlib.sha256()
    for node in graph.nodes:
        h.update(repr((node.name, node.op.value, tuple(node.inputs), tuple(node.outputs),
                       sorted((k, repr(v)) for k, v in node.attrs.items()))).encode())
    for name in sorted(graph.tensors):
        t = graph.tensors[name]
        h.update(repr((name, tuple(t.shape), t.dtype, t.quant)).encode())
        if t.data is not None:
            h.update(np.ascontiguousarray(t.data).tobytes())
    return h.hexdigest()


# --- preparing the data ----------------------------------------------------------------

DEFAULT_LIMITS = (500, 300)  # training images per analysis run, held-out images scoring it


def default_limits(n: int) -> tuple[int, int]:
    """The analysis subsets for a training split of ``n`` images when the user names none:
    500 + 300, or the same 5:3 split of all ``n`` images when there are fewer than 800."""
    train, held = DEFAULT_LIMITS
    if n >= train + held:
        return train, held
    held = max(1, n * held // (train + held))
    return max(1, n - held), held


def prepare(graph: Graph, data: str, limit: int | None = 500, test_limit: int | None = 300,
            resolution: int | None = None,
            classes: int | None = None, config: AnalysisConfig | None = None, data_seed: int = 0,
            name: str | None = None) -> AnalysisData:
    """Load the data, fit the model's head to its classes, resize, take class-balanced subsets.

    The head is fitted, not replaced: the model gets a new head (seeded by the config) only when
    its classifier has another number of classes than the (first ``classes`` of the) dataset.
    ``name`` names the model in the description (default: the graph's meta).

    Both subsets come from the *training* split: ``limit`` images to train each run and, disjoint
    from them, ``test_limit`` held-out images to score it (both None: ``default_limits``).
    Choosing a scheme is model selection, so the dataset's test split is left untouched for
    judging the chosen scheme afterwards.
    """
    ds = load_dataset(data, "train")
    if classes is not None:
        if not 1 <= classes <= ds.num_classes:
            raise ValueError(f"--classes {classes}: the dataset {data!r} has {ds.num_classes} classes")
        keep = np.flatnonzero(ds.labels < classes)
        ds = dataclasses.replace(subset(ds, keep), num_classes=classes, class_names=ds.class_names[:classes])
    if limit is None and test_limit is None:
        limit, test_limit = default_limits(len(ds))
    limit = DEFAULT_LIMITS[0] if limit is None else limit
    test_limit = DEFAULT_LIMITS[1] if test_limit is None else test_limit
    if len(ds) < 2:
        raise ValueError(f"{data!r} has {len(ds)} training image(s): the analysis needs at least 2, one to train "
                         f"and one held out")
    if limit + test_limit > len(ds):
        raise ValueError(f"{data!r} has {len(ds)} training images: {limit} to train plus {test_limit} held out to "
                         f"score each analysis run do not fit; lower --limit / --val-limit so that they sum to at "
                         f"most {len(ds)}")
    held_out = balanced_indices(ds.labels, ds.num_classes, test_limit, data_seed + 1)
    rest = np.setdiff1d(np.arange(len(ds)), held_out)
    train_idx = rest[balanced_indices(ds.labels[rest], ds.num_classes, limit, data_seed)]
    train, test = subset(ds, train_idx), subset(ds, held_out)
    n_classes = train.num_classes
    if int(graph.tensors[graph.outputs[0]].shape[-1]) != n_classes:
        graph = new_head(graph, n_classes, seed=(config or AnalysisConfig()).seed)
    if resolution is not None:
        graph = with_resolution(graph, resolution)
    res = graph.tensors[graph.inputs[0]].shape[1]
    desc = {"model": name or graph.meta.get("model", "graph"), "data": data,
            "train_samples": len(train), "held_out_samples": len(test), "classes": n_classes, "resolution": int(res)}
    return AnalysisData(graph, preprocess(train.images, graph), train.labels.astype(np.int64),
                        preprocess(test.images, graph), test.labels.astype(np.int64), config or AnalysisConfig(),
                        desc)


# --- one job (runs in a worker process) --------------------------------------------------

_BASE_CACHE: dict[str, tuple] = {}


def _base_key(data: AnalysisData) -> str:
    """The data's fingerprint without the learning rate (which the prefix activations do not depend on)."""
    return dataclasses.replace(data, config=dataclasses.replace(data.config, lr=0.0)).fingerprint()


class JobRunner:
    """Runs jobs of one analysis; keeps the frozen-prefix activations so each is computed once."""

    def __init__(self, data: AnalysisData, out_dir: Path | None) -> None:
        self.data = data
        self.out_dir = out_dir
        self.fingerprint = data.fingerprint()
        self._base: tuple[dict, dict] | None = None   # the activations live at the base cut
        self._suffix: dict[str, dict] = {}             # every tensor after the base cut, per split

    def _trainer(self, job: Job):
        c = self.data.config
        cfg = TrainConfig(optimizer=c.optimizer, lr=c.lr, epochs=c.epochs, batch_size=c.batch_size,
                          rounding=c.rounding, seed=c.seed)
        return Trainer(self.data.graph, self.data.scheme(job), cfg)

    def warm(self) -> JobRunner:
        """Compute the shared activations now (in the parent, before the runner is sent to workers)."""
        if self._base is None:
            self._compute_base()
        return self

    def _caches(self, trainer) -> tuple[dict, dict]:
        """The job's prefix cache, sliced from one forward pass up to the earliest cut of all jobs."""
        if self._base is None:
            self._compute_base()
        if trainer.sim.cut == self._base_cut:
            return self._base
        live = trainer.sim.live_at_cut()
        return tuple({name: self._suffix[split][name].to(torch.int64) for name in live}
                     for split in ("train", "test"))

    def _compute_base(self) -> None:
        """The activations at the earliest cut of all jobs, and those live at each job's cut. They do
        not depend on the learning rate, so the runners of one analysis at several rates (choosing
        the rate, then the analysis) share one computation (``_BASE_CACHE``, this process)."""
        key = _base_key(self.data)
        if key in _BASE_CACHE:
            self._base_cut, self._base, self._suffix = _BASE_CACHE[key]
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        n_images = len(self.data.x_train) + len(self.data.x_test)
        bar = tqdm(total=2 * n_images, desc="frozen-prefix activations", unit="img", file=sys.stderr, leave=False)
        try:
            base = self._trainer(Job("bias", self.data.deepest_k()))  # the earliest cut of all jobs
            self._base_cut = base.sim.cut
            self._base = (base.cache(self.data.x_train, progress=bar.update),
                          base.cache(self.data.x_test, progress=bar.update))
            # Only the tensors live at some job's cut are kept (the cuts are those of the bias jobs;
            # weight jobs share the base cut), stored as int32 to bound memory.
            needed = set()
            for k in self.data.bias_ks():
                needed.update(Simulator(self.data.graph, self.data.scheme(Job("bias", k))).live_at_cut())
            for split, cache in zip(("train", "test"), self._base, strict=True):
                env: dict[str, list] = {}
                n = len(next(iter(cache.values())))
                with torch.no_grad():
                    for i in range(0, n, 256):
                        _, acts = base.sim.forward(cached={k: v[i:i + 256] for k, v in cache.items()})
                        for name in needed:
                            env.setdefault(name, []).append(acts[name].q.to(torch.int32))
                        bar.update(min(256, n - i))
                self._suffix[split] = {k: torch.cat(v) for k, v in env.items()}
        finally:
            bar.close()
            torch.set_num_threads(threads)
        _BASE_CACHE.clear()  # one analysis at a time: bound the memory
        _BASE_CACHE[key] = (self._base_cut, self._base, self._suffix)

    def run(self, job: Job) -> dict:
        """Train and score one job. A run that diverges (``train/divergence.py``) is scored as it
        stands when stopped and marked ``diverged`` (step, reason), so that choosing the rate and
        the search see it, and a rerun does not repeat it."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # determinism and no oversubscription: one thread per job
        diverged = None
        try:
            t0 = time.time()
            trainer = self._trainer(job)
            train, test = self._caches(trainer)
            try:
                history = trainer.fit(train, self.data.y_train, test, self.data.y_test)
                accuracy = history[-1]["test_accuracy"]
            except TrainingDiverged as e:
                history, accuracy = trainer.history, trainer.evaluate(test, self.data.y_test)
                diverged = {"step": e.step, "reason": e.reason, "detail": e.detail}
        finally:
            torch.set_num_threads(threads)
        result = {"key": self.data.job_key(job, self.fingerprint), "job": dataclasses.asdict(job),
                  "label": job.label, "accuracy": accuracy, "diverged": diverged,
                  "history": history, "seconds": round(time.time() - t0, 3), "pid": os.getpid()}
        if self.out_dir is not None:
            write_atomic(self.out_dir / "jobs" / f"{result['key']}.json", result)
        return result


def write_atomic(path: Path, doc: dict) -> None:
    """Write JSON so that a reader (or a resumed run) sees the whole file or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


# --- the whole analysis ----------------------------------------------------------------

@dataclasses.dataclass
class ContributionTable:
    """Measured accuracies and gains; the additive accuracy proxy the search maximises."""

    classifier_accuracy: float
    bias_gain: dict[int, float]                      # k -> gain over classifier-only (0 -> 0)
    weight_gain: dict[tuple[str, float], float]      # (layer, ratio) -> gain over bias:base_k
    base_k: int
    candidates: list[str]
    convs: list[str]
    description: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"classifier_accuracy": self.classifier_accuracy, "base_k": self.base_k,
                "candidates": self.candidates, "convs": self.convs, "description": self.description,
                "bias_gain": {str(k): v for k, v in self.bias_gain.items()},
                "weight_gain": [{"layer": layer, "ratio": r, "gain": g} for (layer, r), g in self.weight_gain.items()]}

    @staticmethod
    def from_dict(doc: dict) -> ContributionTable:
        return ContributionTable(doc["classifier_accuracy"], {int(k): v for k, v in doc["bias_gain"].items()},
                                 {(w["layer"], float(w["ratio"])): w["gain"] for w in doc["weight_gain"]},
                                 int(doc["base_k"]), list(doc["candidates"]), list(doc["convs"]),
                                 doc.get("description", {}))


def _make_runner(arg: JobRunner | tuple[AnalysisData, Path | None]) -> JobRunner:
    return arg if isinstance(arg, JobRunner) else JobRunner(*arg)


def _run_job(runner: JobRunner, job: Job) -> dict:
    return runner.run(job)


def map_jobs(data: AnalysisData, out_dir: Path | None, jobs: list[Job], backend: str = "local",
             workers: int | None = None, progress: Callable[[int, int], None] | None = None) -> Iterator[dict]:
    """Run ``jobs`` on a backend; yield each result as it finishes (already written to disk)."""
    token = int(data.fingerprint()[:12], 16)
    workers = min(workers or os.cpu_count() or 1, max(1, len(jobs)))
    # Parallel: the shared frozen-prefix activations are computed once here and shipped to the
    # workers with the runner, instead of once per worker process.
    arg = JobRunner(data, out_dir).warm() if jobs and backend != "serial" and workers > 1 else (data, out_dir)
    with WorkerPool(backend, workers, _make_runner, arg, token) as pool:
        for n, (_, result) in enumerate(pool.map(_run_job, jobs), 1):
            if progress is not None:
                progress(n, len(jobs))
            yield result


def load_results(data: AnalysisData, out_dir: Path) -> dict[str, dict]:
    """Finished results in ``out_dir`` by job key (unreadable files count as not finished)."""
    done = {}
    fp = data.fingerprint()
    for job in data.jobs():
        path = out_dir / "jobs" / f"{data.job_key(job, fp)}.json"
        try:
            done[job.label] = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return done


def run_analysis(data: AnalysisData, out_dir: str | Path, backend: str = "local", workers: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> tuple[ContributionTable, dict]:
    """Run the jobs without a cached result, then build the table. Returns (table, stats)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = data.jobs()
    done = load_results(data, out_dir)
    todo = [j for j in jobs if j.label not in done]
    t0 = time.time()
    for result in map_jobs(data, out_dir, todo, backend=backend, workers=workers, progress=progress):
        done[result["label"]] = result
    stats = {"jobs": len(jobs), "cached": len(jobs) - len(todo), "computed": [j.label for j in todo],
             "wall_seconds": round(time.time() - t0, 2),
             "job_seconds": round(sum(done[j.label]["seconds"] for j in todo), 2),
             "diverged": sorted(label for label, r in done.items() if r.get("diverged"))}
    cls = done["classifier"]
    if cls.get("diverged"):
        raise RuntimeError(f"the classifier-only analysis run diverged at step {cls['diverged']['step']} at lr "
                           f"{data.config.lr:g} ({cls['diverged']['detail']}); every gain is measured from it, so "
                           "give a lower --lr, or --lr auto")
    table = build_table(data, {label: r["accuracy"] for label, r in done.items()})
    write_atomic(out_dir / TABLE_FILE, table.to_dict())
    return table, stats


LR_CANDIDATES = (0.001, 0.003, 0.01, 0.03)


def choose_lr(data: AnalysisData, out_dir: str | Path, lrs: tuple[float, ...] = LR_CANDIDATES,
              backend: str = "local", workers: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> tuple[float, dict[float, float]]:
    """The analysis learning rate: the one whose base run (biases of the last ``base_k`` convs +
    classifier, what every weight run builds on) scores best on the held-out images.

    A rate qualifies only if neither that base run nor the classifier-only run (the level every
    gain is measured from) diverges (``train/divergence.py``); both are cached jobs of the
    analysis. One rate does not fit every model: a linear head trained by SGD is stable only below about
    2 / ||x||^2, and MCUNet-5fps's pooled features (int8 scale 0.147, up to +-18.8) make lr 0.01
    diverge where MbV2's post-ReLU6 features do not. Ties go to the smaller rate. The runs are
    cached like any other job (the rate is part of their key), so a rerun costs nothing.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    job = Job("bias", data.base_k())
    jobs = [job, Job("classifier")]
    variants = {lr: dataclasses.replace(data, config=dataclasses.replace(data.config, lr=lr)) for lr in lrs}
    results: dict[float, dict[str, dict]] = {}
    for lr, d in variants.items():
        done = load_results(d, out_dir)
        results[lr] = {j.label: done[j.label] for j in jobs if j.label in done}
    total = sum(len(jobs) - len(r) for r in results.values())
    finished = 0
    for lr, d in variants.items():
        todo = [j for j in jobs if j.label not in results[lr]]
        if todo:  # each variant has its own data fingerprint, hence its own pool
            for result in map_jobs(d, out_dir, todo, backend=backend, workers=min(len(todo), workers or 2)):
                results[lr][result["label"]] = result
                finished += 1
                if progress is not None:
                    progress(finished, total)
    scores = {lr: results[lr][job.label]["accuracy"] for lr in lrs}
    stable = [lr for lr in lrs if not any(results[lr][j.label].get("diverged") for j in jobs)]
    if not stable:
        raise RuntimeError(f"the analysis runs diverged at every candidate learning rate ({', '.join(map(str, lrs))}); "
                           "give a smaller one with --lr")
    best = max(stable, key=lambda lr: (scores[lr], -lr))
    return best, scores


def diverged_rates(data: AnalysisData, out_dir: str | Path, lrs: tuple[float, ...] = LR_CANDIDATES) -> dict:
    """lr -> the labels of the ``choose_lr`` runs that diverged at it (from the cached results)."""
    out = {}
    for lr in lrs:
        d = dataclasses.replace(data, config=dataclasses.replace(data.config, lr=lr))
        labels = sorted(label for label, r in load_results(d, Path(out_dir)).items() if r.get("diverged"))
        if labels:
            out[lr] = labels
    return out


def build_table(data: AnalysisData, accuracy: dict[str, float]) -> ContributionTable:
    cls = accuracy["classifier"]
    base_k = data.base_k()
    bias = {0: 0.0} | {k: accuracy[Job("bias", k).label] - cls for k in data.bias_ks() if k > 0}
    base = accuracy[Job("bias", base_k).label] if base_k else cls
    weight = {(layer, r): accuracy[Job("weight", base_k, layer, r).label] - base
              for layer in data.candidates() for r in data.config.ratios}
    desc = dict(data.description) | {"config": dataclasses.asdict(data.config)}
    return ContributionTable(cls, bias, weight, base_k, data.candidates(), data.convs(), desc)
