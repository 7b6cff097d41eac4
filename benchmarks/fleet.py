"""Fleet learning against each device alone and against centralised fine-tuning.

For every configuration (model, dataset, Dirichlet alpha, number of devices):

  fleet        ``microtrain.run_fleet`` through Flower's simulation engine (Ray, 2 workers): R rounds, every
               device K steps at batch 1 per round (SGD+QAS on the int8 codes, stochastic
               rounding), FedAvg in real units, requantized; accuracy on the union test set
               after every round; wall time of the whole run (start-up included)
  alone        every device trains the same R x K steps on its own share, from the same start,
               with the same samples, seeds and learning rate, and never aggregates; accuracy of
               every device on the union test set at rounds R/4, R/2, 3R/4 and R (median, mean
               and best device reported); a round whose training the divergence watch stops is
               dropped (the device keeps its rows), as the fleet's server drops it
  centralised  the union of all devices' data pooled in one place: fine-tuning with the same
               scheme and int8 arithmetic (SGD+QAS, stochastic rounding) in mini-batches of 16,
               cosine schedule with 10 % warm-up, for ``--central-epochs`` epochs

and the bytes one device sends per round (the trained rows, as int8/int32 and as Flower
serializes them) against the whole model (int8 as stored, and fp32). The frozen prefix of
every training and test image is computed once per model and dataset and shared on disk by
all runs (``microtrain/fleet/prefix.py``). Prints a table and the fleet's accuracy per round,
draws ``docs/img/fleet-<UTC time>.png`` (its own file per run, so an earlier section's plot is
never overwritten) and appends both to docs/RESULTS.md (``--no-write``: print only, no plot).
Results are cached per configuration in ``--work``: run configurations one by one with
``--only NAME --no-write``, then once without ``--no-write`` to assemble the section.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/fleet.py --rounds 10 --only NAME --no-write
    .venv/bin/python benchmarks/fleet.py --rounds 10                # the whole grid (cached ones reused)
    .venv/bin/python benchmarks/fleet.py --quick --no-write         # a smoke run: 2 configs, few rounds
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import results_md  # noqa: E402

import microtrain as mt  # noqa: E402

MODELS = {
    "default": dict(model="default", scheme="last-k:3", resolution=None, rounds=20, local_steps=20, lr=0.02),
    "mcunet": dict(model="mcunet-5fps", scheme="mcunet-5fps/49kb", resolution=48, rounds=10, local_steps=10,
                   lr=0.005),
}
DATA = {"digits": dict(train_limit=None, test_limit=None, central_epochs=5),
        "fashion-mnist": dict(train_limit=12000, test_limit=2000, central_epochs=2)}  # 12k of 60k: CPU-bound
ZOO_LIMITS = {"fashion-mnist": dict(train_limit=6000, test_limit=1000, central_epochs=2)}


@dataclasses.dataclass
class Config:
    model: str  # key of MODELS
    data: str
    alpha: float
    devices: int

    @property
    def name(self) -> str:
        return f"{self.model}-{self.data}-a{self.alpha:g}-n{self.devices}"

    def params(self, rounds: int | None = None) -> dict:
        p = {**MODELS[self.model], **DATA[self.data]}
        if self.model != "default":
            p.update(ZOO_LIMITS.get(self.data, {}))
        if rounds:
            p["rounds"] = rounds
        return p

    def kwargs(self, rounds: int | None = None) -> dict:
        """The ``microtrain.run_fleet`` arguments of this configuration."""
        p = self.params(rounds)
        return dict(classes=10, scheme=p["scheme"], resolution=p["resolution"], devices=self.devices,
                    alpha=self.alpha, rounds=p["rounds"], local_steps=p["local_steps"], lr=p["lr"],
                    train_limit=p["train_limit"], test_limit=p["test_limit"])


def full_grid() -> list[Config]:
    grid = [Config("default", d, a, n) for d in ("digits", "fashion-mnist") for a in (0.1, 1.0) for n in (10, 100)]
    grid += [Config("mcunet", "fashion-mnist", 0.1, n) for n in (10, 100)]
    grid += [Config("mcunet", "fashion-mnist", 1.0, 100)]
    return grid


# --- device alone -----------------------------------------------------------------------------------
_W: dict = {}


def _alone_init(setup_dir: str, prefix_cache: str) -> None:
    import torch

    from microtrain.fleet.device import SimDevice
    from microtrain.fleet.evaluate import Evaluator
    from microtrain.fleet.setup import data_id, load_setup, test_split, train_prefix, train_split

    torch.set_num_threads(1)
    setup = load_setup(setup_dir)
    sim = SimDevice(setup.graph, setup.scheme, setup.spec.rounding)
    test = test_split(setup.spec)
    _W.update(setup=setup, sim=sim, prefix=train_prefix(setup, sim.prefix),
              labels=train_split(setup.spec).labels.astype(np.int64),
              evaluator=Evaluator(setup.graph, setup.scheme, test.images, test.labels, data_id(setup.spec, "test"),
                                  prefix_cache))


def _alone_device(args: tuple[int, int, list[int]]) -> tuple[int, dict[int, float], int]:
    from microtrain.fleet.device import device_seed, round_order
    from microtrain.train.divergence import TrainingDiverged

    device, rounds, eval_rounds = args
    setup, sim = _W["setup"], _W["sim"]
    spec, idx = setup.spec, setup.parts[device]
    cache = {k: np.asarray(v[idx]) for k, v in _W["prefix"].items()}
    labels = _W["labels"][idx]
    arrays = setup.manifest.extract(setup.graph)
    acc, diverged = {}, 0
    for r in range(1, rounds + 1):
        order = round_order(len(labels), spec.seed, device, r, spec.local_steps)
        try:
            arrays, _ = sim.train(arrays, cache, labels, order, spec.lr, device_seed(spec.seed, r, device))
        except TrainingDiverged:  # as in the fleet: the round's training is dropped, the device keeps its rows
            diverged += 1
        if r in eval_rounds:
            acc[r] = _W["evaluator"].accuracy(arrays)
    return device, acc, diverged


def run_alone(setup_dir: Path, prefix_cache: Path, devices: int, rounds: int, workers: int) -> dict:
    eval_rounds = sorted({max(1, round(rounds * f)) for f in (0.25, 0.5, 0.75, 1.0)})
    t0 = time.time()
    jobs = [(d, rounds, eval_rounds) for d in range(devices)]
    with mp.get_context("spawn").Pool(workers, _alone_init, (str(setup_dir), str(prefix_cache))) as pool:
        out = pool.map(_alone_device, jobs, chunksize=max(1, devices // (4 * workers)))
    res = {d: acc for d, acc, _ in out}
    per_round = {r: [res[d][r] for d in range(devices)] for r in eval_rounds}
    return {"eval_rounds": eval_rounds, "seconds": time.time() - t0, "diverged_rounds": sum(n for _, _, n in out),
            "median": {r: float(np.median(v)) for r, v in per_round.items()},
            "mean": {r: float(np.mean(v)) for r, v in per_round.items()},
            "best": {r: float(np.max(v)) for r, v in per_round.items()},
            "worst": {r: float(np.min(v)) for r, v in per_round.items()}}


# --- centralised --------------------------------------------------------------------------------------
def run_central(setup_dir: Path, prefix_cache: Path, epochs: int, lr: float, batch: int = 16) -> dict:
    import torch

    from microtrain.fleet.device import SimDevice, take
    from microtrain.fleet.evaluate import Evaluator
    from microtrain.fleet.setup import data_id, load_setup, test_split, train_prefix, train_split
    from microtrain.runtime.schedule import learning_rate

    # torch's threads: OMP_NUM_THREADS if set (else torch's default, every core). Forcing two on a shared
    # 2-core machine (load ~10) left the zoo model's runs unfinished after 34 min, the two threads waiting
    # for each other at every op; one thread ran them in 169-280 s each
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or torch.get_num_threads())
    t0 = time.time()
    setup = load_setup(setup_dir)
    sim = SimDevice(setup.graph, setup.scheme, setup.spec.rounding)
    prefix = train_prefix(setup, sim.prefix)
    labels = train_split(setup.spec).labels.astype(np.int64)
    test = test_split(setup.spec)
    ev = Evaluator(setup.graph, setup.scheme, test.images, test.labels, data_id(setup.spec, "test"), prefix_cache)
    t = sim.trainer
    t.int8_opt.seed, t.int8_opt.step_count = 0, 0
    n = len(labels)
    per_epoch = math.ceil(n / batch)
    total, warm = per_epoch * epochs, int(0.1 * per_epoch * epochs)
    acc = []
    for e in range(epochs):
        perm = np.random.default_rng([0, e]).permutation(n)
        for s in range(per_epoch):
            idx = np.sort(perm[s * batch:(s + 1) * batch])
            step_lr = learning_rate("cosine", lr, e * per_epoch + s, warm, total)
            t._step(take(prefix, idx), labels[idx], [np.arange(len(idx))], step_lr)
        acc.append(ev.accuracy(setup.manifest.read_from(t.sim)))
    return {"accuracy": acc[-1], "per_epoch": acc, "epochs": epochs, "lr": lr, "batch": batch,
            "seconds": time.time() - t0}


# --- one configuration ----------------------------------------------------------------------------------
def run_config(cfg: Config, work: Path, workers: int, rounds: int | None) -> dict:
    import logging

    from microtrain.fleet.run import quiet_flower

    quiet_flower(logging.ERROR)
    kw = cfg.kwargs(rounds)
    out = work / cfg.name
    cache = work / "prefix"
    print(f"== {cfg.name}: fleet", file=sys.stderr, flush=True)
    load0 = os.getloadavg()[0]
    t0 = time.time()
    fleet = mt.run_fleet(MODELS[cfg.model]["model"], cfg.data, out, transport="simulation", workers=workers,
                         prefix_cache=cache, **kw)
    fleet_wall = time.time() - t0
    print(f"== {cfg.name}: alone ({fleet_wall:.0f} s for the fleet)", file=sys.stderr, flush=True)
    load1 = os.getloadavg()[0]
    alone = run_alone(out / "setup", cache, cfg.devices, kw["rounds"], workers)
    return {"config": dataclasses.asdict(cfg), "spec": fleet.spec.signature(), "rounds": kw["rounds"],
            "load": [load0, load1],
            "fleet": {"history": [(h["round"], h["accuracy"]) for h in fleet.history], "seconds": fleet_wall,
                      "rejected": sum(len(h.get("rejected", [])) for h in fleet.history),
                      "resumed_from": fleet.resumed_from,
                      "round_seconds": [h.get("seconds", 0.0) for h in fleet.history[1:]], "bytes": fleet.bytes},
            "alone": alone}


def central_for(cfg: Config, work: Path, lrs: list[float], rounds: int | None) -> dict:
    """Centralised fine-tuning on the pooled data (independent of alpha and devices: once per model+data)."""
    key = f"{cfg.model}-{cfg.data}"
    path = work / f"central-{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    setup_dir = work / cfg.name / "setup"
    p = cfg.params(rounds)
    runs = [run_central(setup_dir, work / "prefix", p["central_epochs"], lr) for lr in lrs]
    best = max(runs, key=lambda r: r["accuracy"])
    doc = {"best": best, "runs": runs}
    path.write_text(json.dumps(doc))
    return doc


# --- report ------------------------------------------------------------------------------------------------
def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def table(results: list[dict]) -> list[str]:
    lines = ["| model | data (train / test images) | alpha | devices | rounds x K | fleet | "
             "device alone: median / best | centralised | "
             "fleet - median alone | centralised - fleet | fleet wall time | alone / centralised wall time | "
             "load (1 min, fleet start / end) | bytes up per device per round (payload / serialized) | "
             "whole model int8 / fp32 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c, f, a, ce = r["config"], r["fleet"], r["alone"], (r.get("central") or {}).get("best")
        last = r["rounds"]
        fleet_acc = f["history"][-1][1]
        med = a["median"][str(last)] if str(last) in a["median"] else a["median"][last]
        best = a["best"][str(last)] if str(last) in a["best"] else a["best"][last]
        b = f["bytes"]
        central_acc, gap, central_s = ((f"{pct(ce['accuracy'])} %", f"{100 * (ce['accuracy'] - fleet_acc):+.1f}",
                                        f"{ce['seconds']:.0f} s") if ce else ("not run", "", "-"))
        load = " / ".join(f"{x:.0f}" for x in r["load"]) if r.get("load") else "not recorded"
        sizes = " / ".join(str(r["spec"][k] or "all") for k in ("train_limit", "test_limit"))
        lines.append(f"| {r['spec']['model']} | {c['data']} ({sizes}) | {c['alpha']:g} | {c['devices']} | "
                     f"{last} x {r['spec']['local_steps']} | {pct(fleet_acc)} % | {pct(med)} / {pct(best)} % | "
                     f"{central_acc} | {100 * (fleet_acc - med):+.1f} | {gap} | "
                     f"{f['seconds']:.0f} s ({np.mean(f['round_seconds']):.1f} s/round) | "
                     f"{a['seconds']:.0f} s / {central_s} | {load} | "
                     f"{b['payload_bytes_per_device_per_round']} / {b['up_bytes_per_device_per_round']} B | "
                     f"{b['int8_model_bytes']} / {b['fp32_model_bytes']} B |")
    return lines


def round_table(results: list[dict]) -> list[str]:
    """Fleet accuracy after every round (round 0: the starting model), and the median device alone at the
    rounds it was evaluated (in parentheses)."""
    rounds = max(r["rounds"] for r in results)
    lines = ["| configuration | " + " | ".join(f"r{i}" for i in range(rounds + 1)) + " |",
             "|---|" + "---|" * (rounds + 1)]
    for r in results:
        fleet = dict(r["fleet"]["history"])
        alone = {int(k): v for k, v in r["alone"]["median"].items()}
        cells = [(f"{pct(fleet[i])}" if i in fleet else "") + (f" ({pct(alone[i])})" if i in alone else "")
                 for i in range(rounds + 1)]
        lines.append(f"| {r['config']['model']}-{r['config']['data']}-a{r['config']['alpha']:g}-"
                     f"n{r['config']['devices']} | " + " | ".join(cells) + " |")
    return lines


def plot(results: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["spec"]["model"], r["config"]["data"]), []).append(r)
    alphas = sorted({r["config"]["alpha"] for r in results})
    fig, axes = plt.subplots(len(groups), len(alphas), figsize=(5.2 * len(alphas), 3.6 * len(groups)), squeeze=False)
    for i, ((model, data), rs) in enumerate(sorted(groups.items())):
        for j, alpha in enumerate(alphas):
            ax = axes[i][j]
            for r in (r for r in rs if r["config"]["alpha"] == alpha):
                n = r["config"]["devices"]
                rounds, acc = zip(*r["fleet"]["history"], strict=True)
                line = ax.plot(rounds, [100 * a for a in acc], label=f"fleet, {n} devices")[0]
                er = [int(k) for k in r["alone"]["median"]]
                ax.plot(er, [100 * r["alone"]["median"][k] for k in r["alone"]["median"]], "--o", ms=3,
                        color=line.get_color(), label=f"median device alone ({n})")
                if r.get("central"):
                    ax.axhline(100 * r["central"]["best"]["accuracy"], color="k", ls=":", lw=1)
            ax.set_title(f"{model} / {data}, alpha {alpha:g}", fontsize=9)
            ax.set_xlabel("round")
            ax.set_ylabel("test accuracy %")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, title="dotted: centralised", title_fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 small configs, 4 rounds (a smoke run)")
    ap.add_argument("--only", nargs="*", default=None, help="config names to run (default: the whole grid)")
    ap.add_argument("--rounds", type=int, default=None, help="override the rounds of every config")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--central-lrs", type=float, nargs="+", default=[0.01, 0.03])
    ap.add_argument("--work", default=str(ROOT / "build" / "bench_fleet"))
    ap.add_argument("--no-central", action="store_true", help="leave out the centralised baseline (not computed)")
    results_md.add_flag(ap, also=" and draw no plot")
    a = ap.parse_args()
    grid = full_grid()
    if a.quick:
        grid, a.rounds = [Config("default", "digits", 0.1, 10), Config("default", "digits", 0.1, 100)], a.rounds or 4
    if a.only:
        unknown = sorted(set(a.only) - {c.name for c in grid})
        if unknown:
            ap.error(f"--only: no configuration named {', '.join(unknown)}; "
                     f"choose from {', '.join(c.name for c in grid)}")
        grid = [c for c in grid if c.name in a.only]
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    start = time.time()
    for cfg in grid:
        path = work / f"result-{cfg.name}-r{a.rounds or 0}.json"
        if path.exists():
            r = json.loads(path.read_text())
        else:
            r = run_config(cfg, work, a.workers, a.rounds)
            path.write_text(json.dumps(r))
        r["central"] = None if a.no_central else central_for(cfg, work, a.central_lrs, a.rounds)
        results.append(r)
        print("\n".join(table([r])[2:]), file=sys.stderr, flush=True)
    lines = table(results)
    per_round = ["Fleet accuracy on the union test set after each round, % (in parentheses: the median device "
                 "trained alone, at the rounds it was evaluated):", "", *round_table(results)]
    print("\n".join(lines + [""] + per_round))
    print(f"{time.time() - start:.0f} s in all", file=sys.stderr)
    if not a.no_write:
        now = datetime.datetime.now(datetime.UTC)
        img = plot(results, ROOT / "docs" / "img" / f"fleet-{now:%Y%m%d-%H%M}.png")
        print(f"plot: {img}", file=sys.stderr)
        cmd = results_md.command("benchmarks/fleet.py")
        title = f"## Fleet learning with Flower: fleet vs device alone vs centralised ({now:%Y-%m-%d %H:%M} UTC)"
        text = "\n".join([title,
                          "", f"Command: `{cmd}`  ",
                          f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared).", "", *lines, "",
                          *per_round, "",
                          f"![fleet vs alone vs centralised](img/{img.name})", ""])
        results_md.append(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
