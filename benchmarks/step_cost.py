"""Instructions per training step (valgrind callgrind) of sparse versus full update.

For each zoo model (new 10-class head): the generated C of the full update and of the
published sparse schemes (with reordering), built for the host (-O2), run for a few steps
under ``valgrind --tool=callgrind --toggle-collect=mt_train_step``; the count is the
instructions executed inside ``mt_train_step`` divided by the steps (deterministic). The
ratio full / sparse is what the issue asks to be >= 20. Appends to docs/RESULTS.md.

    .venv/bin/python benchmarks/step_cost.py [--models mbv2-w0.35] [--steps 2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import results_md

from microtrain.codegen.driver_files import write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.frontend.heads import new_head
from microtrain.models import ZOO_NAMES, load_model
from microtrain.sparse.presets import PUBLISHED, load_scheme
from microtrain.targets import host


def _callgrind(out: Path, work: Path, exe: Path, function: str) -> int:
    cg_out = work / f"callgrind.{function}.out"
    wrapper = ("valgrind", "--tool=callgrind", f"--toggle-collect={function}", f"--callgrind-out-file={cg_out}")
    host.run(out, work, exe=exe, timeout=3600, wrapper=wrapper)
    m = re.search(r"^(?:summary|totals): (\d+)", cg_out.read_text(), re.M)
    if not m:
        raise RuntimeError(f"no instruction total in {cg_out}")
    return int(m.group(1))


def instructions_per_step(graph, scheme_name: str, steps: int, root: Path) -> tuple[int, int]:
    """(instructions per mt_train_step, instructions per mt_infer)."""
    step = compile_training(graph, load_scheme(scheme_name, graph), CompileOptions())
    out = generate_project(step, graph, root / scheme_name.replace("/", "_"))
    exe = host.build(out, opt="-O2", arch=())  # the portable C (no -march: MT_NN_VEC off), as before
    rng = np.random.default_rng(0)
    shape = graph.tensors[graph.inputs[0]].shape[1:]
    x = rng.integers(-128, 128, (steps,) + shape).astype(np.int8)
    y = rng.integers(0, 10, steps).astype(np.int32)
    work = write_driver_files(out / "cg", x, y, steps=steps, lr=0.01)
    train = _callgrind(out, work, exe, "mt_train_step") // steps
    work = write_driver_files(out / "cg_infer", x, y, steps=0, lr=0.01, x_test=x, y_test=y, eval_count=steps)
    return train, _callgrind(out, work, exe, "mt_infer") // steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(ZOO_NAMES))
    ap.add_argument("--steps", type=int, default=2)
    results_md.add_flag(ap)
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind not installed (Debian package valgrind)", file=sys.stderr)
        return 1
    lines = ["| model | scheme | instructions / training step | full / this | of which backward + update "
             "(step - inference) | full / this (backward + update) |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            graph = new_head(load_model(model), 10)
            full, infer = instructions_per_step(graph, "full", args.steps, Path(tmp))
            lines.append(f"| {model} | full (inference {infer:,}) | {full:,} | 1.0 | {full - infer:,} | 1.0 |")
            print(lines[-1], file=sys.stderr)
            for budget in PUBLISHED[model]:
                n, inf_n = instructions_per_step(graph, f"{model}/{budget}", args.steps, Path(tmp))
                lines.append(f"| {model} | {model}/{budget} (reorder) | {n:,} | {full / n:.1f} | {n - inf_n:,} | "
                             f"{(full - infer) / max(n - inf_n, 1):.1f} |")
                print(lines[-1], file=sys.stderr)
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
        section = (f"\n## Instructions per training step, sparse vs full update ({datetime.date.today()})\n\n"
                   f"Command: `.venv/bin/python benchmarks/step_cost.py --steps {args.steps}`; machine: "
                   f"{platform.machine()}, nproc {nproc}; gcc -O2 host build of the generated C, "
                   "`valgrind --tool=callgrind --toggle-collect=mt_train_step`, instructions inside mt_train_step "
                   f"divided by {args.steps} steps (deterministic; reference C kernels of runtime/, the same "
                   "kernels for both schemes, so the ratio is the work the sparse scheme removes).\n\n"
                   f"{text}\n")
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
