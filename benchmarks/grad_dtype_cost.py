"""Integer errors on the emulated Cortex-M7: SRAM and instructions per sparse step, fp32 vs int16
vs int8 error tensors (``compile --grad-dtype``), for the zoo models with the published ~100 KB
schemes (new 10-class head, 128x128). Each build + QEMU run is ``target_cost.measure``'s (SRAM =
.data + .bss + heap in use + stack high-water; instructions = QEMU -icount inside one
``mt_train_step``, median over the steps). Prints a table and appends it to
docs/RESULTS.md (``--no-write``: print only) with the command, the date and the machine.

    nice -n 10 .venv/bin/python benchmarks/grad_dtype_cost.py [--models mbv2-w0.35 ...] [--steps 2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
from pathlib import Path

import results_md

sys.path.insert(0, str(Path(__file__).resolve().parent))

from target_cost import SCHEMES, measure  # noqa: E402

from microtrain.compiler.pipeline import CompileOptions  # noqa: E402
from microtrain.frontend.heads import new_head  # noqa: E402
from microtrain.models import ZOO_NAMES, load_model  # noqa: E402

KB = 1024
VARIANTS = {"fp32": CompileOptions(), "fp32-unstreamed": CompileOptions(stream_grads=False),
            "int16": CompileOptions(grad_dtype="int16"), "int8": CompileOptions(grad_dtype="int8")}
"""fp32-unstreamed: fp32 errors without stream_block_grads, the schedule integer errors get (their
per-tensor scale needs the whole error, so no block backward is streamed channel by channel)."""
DTYPES = ("fp32", "int16", "int8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(ZOO_NAMES))
    ap.add_argument("--dtypes", nargs="*", default=list(DTYPES), choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=2)
    results_md.add_flag(ap)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            graph = new_head(load_model(model), 10)
            for dtype in args.dtypes:
                print(f"{model}: {SCHEMES[model]}, {dtype} errors", file=sys.stderr, flush=True)
                r = measure(graph, SCHEMES[model], args.steps, Path(tmp), ["256KB", "1MB"],
                            options=VARIANTS[dtype], tag=f"_{dtype}")
                rows.append((model, dtype, r))
    base = {m: r for m, d, r in rows if d == "fp32"}
    lines = ["| model | errors | links at 256 KB? | SRAM measured | arena | instructions / step | "
             "step - inference | vs fp32 errors (step) | vs fp32 (step - inference) |", "|" + "---|" * 9]
    for model, dtype, r in rows:
        b = base.get(model)
        rel = rel_bwd = ""
        if b is not None:
            rel = f"{100 * (r['insns'] / b['insns'] - 1):+.1f} %, SRAM {(r['sram'] - b['sram']) / KB:+.1f} KB"
            rel_bwd = f"{100 * ((r['insns'] - r['infer']) / (b['insns'] - b['infer']) - 1):+.1f} %"
        lines.append(f"| {model} | {dtype} | {r['fits']} | {r['sram'] / KB:.1f} KB | {r['arena'] / KB:.1f} KB | "
                     f"{r['insns']:,} | {r['insns'] - r['infer']:,} | {rel} | {rel_bwd} |")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        cmd = results_md.command("benchmarks/grad_dtype_cost.py", prefix="nice -n 10 .venv/bin/python")
        gcc = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        section = (f"\n## Integer errors on the emulated Cortex-M7: SRAM and instructions per step "
                   f"(benchmarks/grad_dtype_cost.py)\n\nCommand: `{cmd}`  \n"
                   f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  \n"
                   f"Machine: {results_md.machine()} (shared); {gcc}; "
                   f"qemu-system-arm -M mps2-an500 -icount, {args.steps} steps (median)\n\n{table}\n")
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
