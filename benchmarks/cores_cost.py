"""SRAM, flash and instructions per sparse training step on every emulated core (issue 17).

For the default CNN (Fashion-MNIST, 28x28x1; its last 3 layers' biases and last 2 layers' weights
trained) and the three zoo models (new 10-class head, the published ~100 KB-class sparse scheme):
compile once, link for each core at 256 KB SRAM / 1 MB flash (when that does not fit, the
overflow is recorded and the run links at a larger SRAM budget, the board's largest block that
holds it), run a few training steps on the core's QEMU board and measure
  SRAM  = .data + .bss + heap in use + stack high-water (ELF + painted stack),
  flash = .text + .rodata + .data image,
  cost  = instructions per training step (QEMU -icount; median over the steps; exact).
The Cortex-M55 is measured twice: with its Helium kernels (runtime/include/mt_nn_mve.h) and
built with -DMT_NN_NO_MVE (the DSP kernels every other Arm core runs), for Helium's share.
Every core's loss bits are checked against the first core's (the same step everywhere).
Appends a section to docs/RESULTS.md.

    .venv/bin/python benchmarks/cores_cost.py [--models default mbv2-w0.35 ...] [--cores cortex-m7 ...]
        [--steps 2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import results_md

from microtrain.codegen.driver_files import write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.errors import UserError
from microtrain.frontend.heads import new_head
from microtrain.models import ZOO_NAMES, load_model
from microtrain.scheme import make_scheme
from microtrain.sparse.presets import load_scheme
from microtrain.targets.mcu import CORES, McuTarget

SCHEMES = {"mbv2-w0.35": "mbv2-w0.35/99kb", "proxyless-w0.3": "proxyless-w0.3/98kb",
           "mcunet-5fps": "mcunet-5fps/99kb"}
BUDGETS = ["256KB", "512KB", "4MB", "16MB"]
KB = 1024
# (row name, core, extra defines)
VARIANTS = {"cortex-m55": [("cortex-m55", "cortex-m55", ()), ("cortex-m55 without Helium", "cortex-m55",
                                                               ("MT_NN_NO_MVE",))]}


def model_and_scheme(name: str):
    if name == "default":
        graph = new_head(load_model("default"), 10)
        names = [n.name for n in graph.weighted_nodes()]
        return graph, make_scheme(graph, names[-3:], {n: 1.0 for n in names[-2:]}), "last 3 biases + last 2 weights"
    graph = new_head(load_model(name), 10)
    return graph, load_scheme(SCHEMES[name], graph), SCHEMES[name]


def measure(out: Path, core: str, defines: tuple[str, ...], steps: int, x, y) -> dict:
    target = McuTarget(core)
    row: dict = {"fits": None}
    elf = None
    for i, sram in enumerate(BUDGETS):
        try:
            elf = target.build(out, sram=sram, defines=defines)
            row["budget"] = sram
            break
        except UserError as e:
            m = re.search(r"(\w+) overflowed by (\d+) bytes", str(e))
            if m is None and "larger than the largest RAM block" not in str(e):
                raise
            if row["fits"] is None and m is not None:
                row["fits"] = f"no: {m.group(1)} +{int(m.group(2)) / KB:.1f} KB"
            if i == len(BUDGETS) - 1:
                raise
    row["fits"] = row["fits"] or "yes"
    work = write_driver_files(out / f"run_{core}_{len(defines)}", x, y, steps=steps, lr=0.01, x_test=x[:1],
                              y_test=y[:1], eval_count=1)
    res = target.run(out, work, elf=elf, sram=row["budget"], defines=defines, timeout=7200)
    mem = res.memory
    row.update(sram=mem["sram_bytes"], flash=mem["flash_bytes"], loss_bits=res.loss_bits,
               insns=sorted(res.step_instructions)[len(res.step_instructions) // 2],
               infer=res.infer_instructions[0] if res.infer_instructions else None)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["default", *ZOO_NAMES])
    ap.add_argument("--cores", nargs="*", default=list(CORES))
    ap.add_argument("--steps", type=int, default=2)
    results_md.add_flag(ap)
    args = ap.parse_args()
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            graph, scheme, scheme_name = model_and_scheme(model)
            step = compile_training(graph, scheme, CompileOptions())
            out = generate_project(step, graph, Path(tmp) / model)
            rng = np.random.default_rng(0)
            x = rng.integers(-128, 128, (args.steps,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
            y = rng.integers(0, 10, args.steps).astype(np.int32)
            first = None
            for core in args.cores:
                for label, name, defines in VARIANTS.get(core, [(core, core, ())]):
                    print(f"{model} on {label}", file=sys.stderr, flush=True)
                    r = measure(out, name, defines, args.steps, x, y)
                    first = first or r["loss_bits"]
                    r["same_bits"] = r["loss_bits"] == first
                    rows.append((model, scheme_name, label, r))
                    print(f"  {r['insns']:,} instructions/step, SRAM {r['sram'] / KB:.1f} KB, "
                          f"flash {r['flash'] / KB:.1f} KB, fits 256 KB: {r['fits']}", file=sys.stderr, flush=True)
    head = ("| model | scheme | core | fits 256 KB SRAM / 1 MB flash? | SRAM | flash | instructions / step | "
            "inference | loss bits = first core's |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for model, scheme_name, label, r in rows:
        same = "yes" if r["same_bits"] else "NO"
        lines.append(f"| {model} | {scheme_name} | {label} | {r['fits']} | {r['sram'] / KB:.1f} KB | "
                     f"{r['flash'] / KB:.1f} KB | {r['insns']:,} | {r['infer']:,} | {same} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        cmd = results_md.command("benchmarks/cores_cost.py", prefix="nice .venv/bin/python")
        tools = [subprocess.run([t, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
                 for t in ("arm-none-eabi-gcc", "riscv64-unknown-elf-gcc", "qemu-system-arm")]
        meta = "  \n".join([
            f"Command: `{cmd.strip()}`",
            f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {time.time() - t0:.0f} s",
            f"Machine: {results_md.machine()}; {'; '.join(tools)}",
            "Setup: batch 1, stochastic rounding (the compiler's default), QAS, reordering with per-channel updates, "
            f"{args.steps} steps on "
            "random int8 inputs; `-O2 -ffp-contract=off` with each core's flags (docs/targets.md); QEMU "
            "`-icount shift=6`. SRAM and flash measured at the budget the row links at."])
        section = f"""
## Every core: SRAM, flash and instructions per sparse step (benchmarks/cores_cost.py)

{meta}

{table}
"""
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
