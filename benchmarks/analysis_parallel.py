"""Contribution analysis: serial vs the local process pool vs Ray, same runs, wall time and numbers.

The analysis runs are independent fine-tunings; `microtrain plan` runs them on a process pool
by default (`--workers`, default the CPU count) or on Ray (`--backend ray`). This benchmark runs
the same N runs of one model/dataset three ways, without any cache, each backend `--repeats`
times in turn (serial, local, ray, serial, local, ray, ...), and reports the median wall time per
backend and whether every run's accuracy is identical across backends. Appends to
docs/RESULTS.md.

    nice -n 10 .venv/bin/python benchmarks/analysis_parallel.py
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import results_md

import microtrain
from microtrain.sparse.contribution import AnalysisConfig, map_jobs, prepare

ROOT = Path(__file__).resolve().parent.parent


def timed_run(data, jobs, backend: str, workers: int) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    acc = {r["label"]: r["accuracy"] for r in map_jobs(data, None, jobs, backend, workers)}
    return time.perf_counter() - t0, acc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mbv2-w0.35")
    p.add_argument("--data", default="digits")
    p.add_argument("--resolution", type=int, default=40)
    p.add_argument("--limit", type=int, default=300, help="training images per run")
    p.add_argument("--val-limit", dest="test_limit", type=int, default=200, help="held-out images scoring each run")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--jobs", type=int, default=24, help="how many analysis runs (weight runs first)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backends", nargs="+", default=["serial", "local", "ray"])
    results_md.add_flag(p)
    a = p.parse_args()

    cfg = AnalysisConfig(epochs=a.epochs, candidates=8)
    data = prepare(microtrain.load_model(a.model), a.data, a.limit, a.test_limit, a.resolution, None, cfg, name=a.model)
    jobs = sorted(data.jobs(), key=lambda j: j.kind != "weight")[:a.jobs]
    walls: dict[str, list[float]] = {b: [] for b in a.backends}
    results: dict[str, dict[str, float]] = {}
    for rep in range(a.repeats):
        for backend in a.backends:
            wall, acc = timed_run(data, jobs, backend, 1 if backend == "serial" else a.workers)
            walls[backend].append(wall)
            results.setdefault(backend, acc)
            same = acc == results[backend]
            print(f"repeat {rep}: {backend:6s} {wall:6.1f} s  (same as its first repeat: {same})", file=sys.stderr)
            if not same:
                raise SystemExit(f"{backend} gave different accuracies on repeat {rep}")
    ref = results[a.backends[0]]
    med = {b: statistics.median(w) for b, w in walls.items()}
    now = datetime.datetime.now(datetime.UTC)
    cmd = results_md.command("benchmarks/analysis_parallel.py", prefix="nice -n 10 .venv/bin/python")
    lines = [f"## Contribution analysis: serial vs parallel vs Ray ({now:%Y-%m-%d %H:%M} UTC)", "",
             f"Command: `{cmd}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared). {len(jobs)} analysis runs of "
             f"{a.model} on {a.data} ({a.limit} training images, scored on {a.test_limit} held out, at "
             f"{a.resolution}x{a.resolution}, {a.epochs} epoch, SGD+QAS), no cache; {a.workers} workers for local "
             f"and Ray; each backend run {a.repeats} times, interleaved; wall time includes worker start-up and the "
             "frozen-prefix activations.", "",
             "| backend | workers | median wall s | all runs s | speed-up vs serial | accuracies identical to serial |",
             "|---|---|---|---|---|---|"]
    for b in a.backends:
        lines.append(f"| {b} | {1 if b == 'serial' else a.workers} | {med[b]:.1f} | "
                     f"{', '.join(f'{w:.1f}' for w in walls[b])} | {med[a.backends[0]] / med[b]:.2f}x | "
                     f"{results[b] == ref} ({len(ref)} runs) |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not a.no_write:
        results_md.append(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
