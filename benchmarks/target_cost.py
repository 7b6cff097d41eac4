"""Memory and cost of on-device training on the emulated Cortex-M7 (QEMU mps2-an500).

For each zoo model (new 10-class head) and the published ~100 KB-class sparse scheme: the
generated project is linked with arm-none-eabi-gcc at 256 KB SRAM / 1 MB flash (when it
does not fit, the linker's overflow is recorded and the run uses a 1 MB SRAM budget), run on
QEMU for a few training steps, and measured:
  SRAM  = .data + .bss + heap in use + stack high-water (ELF + painted stack),
  flash = .text + .rodata + .data image,
  cost  = instructions executed per training step (QEMU -icount, exact to one instruction;
          median over the steps; see microtrain/targets/mcu/startup_arm.c).
Then the full update (every weight and bias) linked with a 16 MB SRAM budget (board PSRAM),
one step, for the sparse/full cost ratio. Appends a section to docs/RESULTS.md.

    .venv/bin/python benchmarks/target_cost.py [--models mbv2-w0.35 ...] [--steps 3] [--no-full] [--stream-input]
        [--no-write]
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

from microtrain.cli.common import UserError
from microtrain.codegen.driver_files import write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.frontend.heads import new_head
from microtrain.models import ZOO_NAMES, load_model
from microtrain.report.inspect import MACS_RULES
from microtrain.sparse.presets import load_scheme
from microtrain.targets import cortex_m7

SCHEMES = {"mbv2-w0.35": "mbv2-w0.35/99kb", "proxyless-w0.3": "proxyless-w0.3/98kb",
           "mcunet-5fps": "mcunet-5fps/99kb"}
PAPER_SRAM_KB = {"mbv2-w0.35": 141, "proxyless-w0.3": 135, "mcunet-5fps": 173}  # sparse + reordering
PAPER_FULL_KB = {"mbv2-w0.35": 2939, "proxyless-w0.3": 2745, "mcunet-5fps": 3650}
# TTE sparse step on a 216 MHz STM32F746 (373 / 443 / 546 ms), in M cycles: the instruction target
PAPER_MCYCLES = {"mbv2-w0.35": 80.6, "proxyless-w0.3": 95.7, "mcunet-5fps": 117.9}
KB = 1024


def measure(graph, scheme_name: str, steps: int, root: Path, budgets: list[str], stream: bool = False,
            options: CompileOptions | None = None, defines: tuple[str, ...] = (), tag: str = "") -> dict:
    """One build + QEMU run; options (default: the compiler's, with stream) and firmware defines (e.g.
    MT_NN_NO_DSP) for benchmarks/step_ladder.py; tag names the project directory."""
    t0 = time.time()
    options = options or CompileOptions(stream_input=stream)
    step = compile_training(graph, load_scheme(scheme_name, graph), options)
    out = generate_project(step, graph, root / (scheme_name.replace("/", "_").replace(":", "_") + "_s" * stream + tag))
    row = {"scheme": scheme_name + (" + stream-input" if stream else ""), "planned_peak": step.plan.arena_bytes + sum(
        step.graph.tensors[t["name"]].data.nbytes for t in step.graph.meta["training"]["trained"]), "fits": None}
    for i, sram in enumerate(budgets):
        try:
            elf = cortex_m7.build(out, sram=sram, defines=defines)
            row["budget"] = sram
            break
        except UserError as e:
            if "overflowed" not in str(e) or i == len(budgets) - 1:
                raise
            m = re.search(r"(\w+) overflowed by (\d+) bytes", str(e))
            row["fits"] = f"no: {m.group(1)} over by {int(m.group(2)) / KB:.1f} KB at {sram} (run at {budgets[i + 1]})"
            print(f"  {scheme_name}: {row['fits']}", file=sys.stderr)
    if row["fits"] is None:
        row["fits"] = "yes" if row["budget"] == "256KB" else f"not tried (linked at {row['budget']})"
    rng = np.random.default_rng(0)
    shape = graph.tensors[graph.inputs[0]].shape[1:]
    x = rng.integers(-128, 128, (steps,) + shape).astype(np.int8)
    y = rng.integers(0, 10, steps).astype(np.int32)
    work = write_driver_files(out / "qemu_run", x, y, steps=steps, lr=0.01, x_test=x[:1], y_test=y[:1],
                              eval_count=1)
    res = cortex_m7.run(out, work, elf=elf, sram=row["budget"], timeout=3600)
    mem = res.memory
    row.update(sram=mem["sram_bytes"], flash=mem["flash_bytes"], stack=mem["stack_high_water_bytes"],
               heap=mem["heap_used_bytes"], arena=mem["breakdown"]["arena"],
               trainable=mem["breakdown"]["trainable_weights"], driver=mem["breakdown"]["driver_buffers"],
               insns=sorted(res.step_instructions)[len(res.step_instructions) // 2],
               infer=res.infer_instructions[0] if res.infer_instructions else None, seconds=time.time() - t0)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(ZOO_NAMES))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--no-full", action="store_true", help="skip the full-update builds")
    ap.add_argument("--stream-input", action="store_true",
                    help="also measure the sparse scheme compiled with --stream-input (input rows read on demand)")
    results_md.add_flag(ap)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            graph = new_head(load_model(model), 10)
            macs = sum(MACS_RULES[n.op](n, graph) for n in graph.nodes if n.op in MACS_RULES)
            print(f"{model}: sparse {SCHEMES[model]}", file=sys.stderr)
            sparse = measure(graph, SCHEMES[model], args.steps, Path(tmp), ["256KB", "1MB"])
            streamed = None
            if args.stream_input:
                print(f"{model}: sparse {SCHEMES[model]} + stream-input", file=sys.stderr)
                streamed = measure(graph, SCHEMES[model], args.steps, Path(tmp), ["256KB", "1MB"], stream=True)
            full = None
            if not args.no_full:
                print(f"{model}: full update", file=sys.stderr)
                full = measure(graph, "full", 1, Path(tmp), ["16MB"])
            rows.append((model, sparse, streamed, full))
            for r in (sparse, streamed, full):
                if r is not None:
                    r["macs"] = macs

    head = ("| model | scheme | links at 256 KB SRAM? | SRAM measured | paper | arena | trained in RAM | "
            "driver buffers | heap + stack | flash | instructions / step | paper M cycles / step | inference | "
            "inference MAC / instruction | step - inference | full / sparse (step) | "
            "full / sparse (step - inference) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for model, s, st, f in rows:
        for r, paper in ((s, PAPER_SRAM_KB[model]), (st, PAPER_SRAM_KB[model]), (f, PAPER_FULL_KB[model])):
            if r is None:
                continue
            ratio = ratio_bwd = ""
            if f and r is f:
                ratio = f"{f['insns'] / s['insns']:.1f}x"
                ratio_bwd = f"{(f['insns'] - f['infer']) / (s['insns'] - s['infer']):.1f}x"
            lines.append(f"| {model} | {r['scheme']} | {r['fits']} | {r['sram'] / KB:.1f} KB | {paper} KB | "
                         f"{r['arena'] / KB:.1f} KB | {r['trainable'] / KB:.1f} KB | {r['driver'] / KB:.1f} KB | "
                         f"{(r['heap'] + r['stack']) / KB:.1f} KB | {r['flash'] / KB:.1f} KB | {r['insns']:,} | "
                         f"{PAPER_MCYCLES[model] if r is not f else ''} | {r['infer']:,} | "
                         f"{r['macs'] / r['infer']:.2f} | {r['insns'] - r['infer']:,} | {ratio} | {ratio_bwd} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        cmd = results_md.command("benchmarks/target_cost.py")
        gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        qemu = subprocess.run(["qemu-system-arm", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        meta = "  \n".join([  # markdown line breaks
            f"Command: `{cmd.strip()}`",
            f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
            f"Machine: {results_md.machine()}; {gcc}; {qemu}",
            "Setup: zoo model + new 10-class head, 128x128x3 int8 input, batch 1, stochastic rounding "
            "(the compiler's default), QAS, reordering with per-channel updates; firmware built with "
            "`-O2 -ffp-contract=off` for Cortex-M7 + FPv5-D16, newlib-nano + semihosting; run on "
            f"`qemu-system-arm -M mps2-an500 -icount shift=6` for {args.steps} sparse steps (1 full step)."])
        section = f"""

## On the emulated Cortex-M7: SRAM, flash and instructions per step (benchmarks/target_cost.py)

{meta}

SRAM measured = .data + .bss + heap in use (newlib FILE structs and dtoa bigints; the driver's stdio
buffers are static, "driver buffers") + stack high-water (painted stack), from the linked ELF and the run.
"+ stream-input": compiled with `--stream-input`, the first fused block reads the image rows from the data
file on demand (a 3-row ring in arena bytes free at that point) instead of holding the 48 KB image.
Paper: measured peak SRAM of TTE sparse
update + reordering (sparse rows) and TTE full update (full rows), Lin et al. 2022. Instructions: executed
inside one `mt_train_step` call (median over the steps), inference = one `mt_infer` call. Full-update rows
are linked with a 16 MB SRAM budget (QEMU's PSRAM): they cannot fit a microcontroller. "step - inference"
approximates the backward pass + updates (the training forward also saves masks/activations, so it is not
exactly one inference): the forward pass is common to sparse and full update and bounds their ratio.
"paper M cycles / step": the TTE sparse step's published time on a 216 MHz STM32F746, the target for
instructions / step (the Cortex-M7 retires about one instruction per cycle or more). "inference MAC /
instruction": the model's conv + FC multiply-accumulates (report/inspect.py MACS_RULES) per instruction
of one `mt_infer`.

{table}
"""
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
