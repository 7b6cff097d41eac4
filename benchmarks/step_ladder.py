"""The paper's comparison done rung by rung: instructions per training step on the emulated Cortex-M7.

The Tiny Training Engine paper's 23-25x compares its sparse step on its optimised kernels with a full
update on generic kernels. This builds the same ladder for each zoo model (new 10-class head), each
rung a generated project linked for the Cortex-M7 and run on QEMU (`-icount`, instructions inside one
`mt_train_step`, median over the steps; benchmarks/target_cost.py measures):
  1. full update, plain kernels: every weight and bias trained, unfused ops (no fused frozen blocks, no
     streamed block backward), the runtime's portable C (-DMT_NN_NO_DSP: no SMLAD, no asm);
  2. sparse update, plain kernels: the published ~100 KB scheme, same compiler options and kernels;
  3. sparse + reorder + optimised kernels: the default compile (fused blocks, streamed block backward,
     per-channel reordered updates) on the DSP kernels.
Then the ratios 1/3 (the paper's comparison), 1/2 (what sparsity alone gives), 2/3 (what fusion,
streaming and the DSP kernels give). The full rung links at 16 MB (QEMU's PSRAM). Appends a section
to docs/RESULTS.md unless --no-write.

    .venv/bin/python benchmarks/step_ladder.py [--models mbv2-w0.35 ...] [--steps 2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import results_md
from target_cost import PAPER_MCYCLES, SCHEMES, measure

from microtrain.compiler.pipeline import CompileOptions
from microtrain.frontend.heads import new_head
from microtrain.models import ZOO_NAMES, load_model

PLAIN = CompileOptions(fuse_blocks=False, stream_grads=False)
RUNGS = (  # (label, scheme (None: the model's published one), options, firmware defines, budgets)
    ("full update, plain kernels", "full", PLAIN, ("MT_NN_NO_DSP",), ["16MB"]),
    ("sparse, plain kernels", None, PLAIN, ("MT_NN_NO_DSP",), ["256KB", "1MB", "16MB"]),
    ("sparse + reorder + optimised kernels", None, CompileOptions(), (), ["256KB", "1MB"]),
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(ZOO_NAMES))
    ap.add_argument("--steps", type=int, default=2)
    results_md.add_flag(ap)
    args = ap.parse_args()
    lines = ["| model | rung | SRAM measured | instructions / step | full plain / this | paper M cycles (TTE sparse) |",
             "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            graph = new_head(load_model(model), 10)
            rows = []
            for k, (label, scheme, options, defines, budgets) in enumerate(RUNGS):
                print(f"{model}: {label}", file=sys.stderr)
                steps = 1 if scheme == "full" else args.steps
                rows.append(measure(graph, scheme or SCHEMES[model], steps, Path(tmp), budgets, options=options,
                                    defines=defines, tag=f"_rung{k}"))
            full = rows[0]["insns"]
            for (label, *_), r in zip(RUNGS, rows, strict=True):
                lines.append(f"| {model} | {label} ({r['scheme']}, {r['fits']}) | {r['sram'] / 1024:.1f} KB | "
                             f"{r['insns']:,} | {full / r['insns']:.1f}x | "
                             f"{PAPER_MCYCLES[model] if r is rows[-1] else ''} |")
            print(f"{model}: sparsity alone {full / rows[1]['insns']:.1f}x, fusion + streaming + DSP kernels "
                  f"{rows[1]['insns'] / rows[2]['insns']:.1f}x, overall {full / rows[2]['insns']:.1f}x",
                  file=sys.stderr)
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        cmd = results_md.command("benchmarks/step_ladder.py")
        section = f"""

## The paper's ladder: full update, plain kernels -> sparse -> sparse + optimised (benchmarks/step_ladder.py)

Command: `{cmd.strip()}`<br>
Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC<br>
Machine: {results_md.machine()}; QEMU mps2-an500 `-icount`, instructions inside one
`mt_train_step` (median over {args.steps} sparse steps, 1 full step). "Plain kernels": unfused ops, no streamed
block backward, the runtime's portable C (`-DMT_NN_NO_DSP`); the optimised rung is the default compile on the
DSP kernels. The paper's 23-25x is rung 1 / rung 3 on its own engine.

{table}
"""
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
