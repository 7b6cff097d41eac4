"""Fused frozen blocks (compiler/fuse_frozen_blocks.py): memory and cost, with and without.

For each zoo model at 128x128 with a new 10-class head and the published ~100 KB-class scheme:
  * int8 inference arena (planner) with whole tensors, with split_bands only, with the fused
    blocks only, and with both (the default);
  * planned training peak (arena + trained tensors in RAM) with fuse_blocks off / on
    (split_bands on in both);
  * on the emulated Cortex-M7 (QEMU mps2-an500, arm-none-eabi-gcc, linked at 256 KB SRAM
    or, when it does not fit, 1 MB): measured SRAM (.data + .bss + heap + stack high-water),
    instructions per training step and per inference (QEMU -icount), fuse off / on.
Appends a section to docs/RESULTS.md.

    .venv/bin/python benchmarks/fused_blocks.py [--models ...] [--no-qemu] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import results_md

from microtrain.cli.common import UserError
from microtrain.codegen.driver_files import write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_inference, compile_training
from microtrain.frontend.heads import new_head
from microtrain.models import ZOO_NAMES, load_model
from microtrain.sparse.presets import load_scheme

SCHEMES = {"mbv2-w0.35": "99kb", "proxyless-w0.3": "98kb", "mcunet-5fps": "99kb"}
PAPER_SRAM_KB = {"mbv2-w0.35": 141, "proxyless-w0.3": 135, "mcunet-5fps": 173}
KB = 1024


def on_target(graph, scheme, fuse: bool, root: Path) -> dict:
    from microtrain.targets import cortex_m7

    step = compile_training(graph, scheme, CompileOptions(fuse_blocks=fuse))
    out = generate_project(step, graph, root / f"fuse_{int(fuse)}")
    fits = "yes"
    for sram in ("256KB", "1MB"):
        try:
            elf = cortex_m7.build(out, sram=sram)
            break
        except UserError as e:
            m = re.search(r"(\w+) overflowed by (\d+) bytes", str(e))
            if m is None or sram == "1MB":
                raise
            fits = f"no ({m.group(1)} over by {int(m.group(2)) / KB:.1f} KB)"
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (1,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
    y = np.zeros(1, np.int32)
    work = write_driver_files(out / "run", x, y, steps=1, lr=0.01, x_test=x, y_test=y, eval_count=1)
    res = cortex_m7.run(out, work, elf=elf, sram=sram, timeout=3600)
    return {"fits": fits, "sram": res.memory["sram_bytes"], "step": res.step_instructions[0],
            "infer": res.infer_instructions[0] if res.infer_instructions else None}


def rows(models, qemu: bool) -> list[dict]:
    out = []
    for model in models:
        g = new_head(load_model(model), 10)
        scheme = load_scheme(f"{model}/{SCHEMES[model]}", g)
        r = {"model": model, "scheme": f"{model}/{SCHEMES[model]}"}
        for key, bands, fuse in (("inf_whole", False, False), ("inf_bands", True, False),
                                 ("inf_fused", False, True), ("inf_both", True, True)):
            r[key] = compile_inference(g, bands=bands, fuse_blocks=fuse).arena_bytes
        for fuse in (False, True):
            r[f"train_{int(fuse)}"] = compile_training(g, scheme, CompileOptions(fuse_blocks=fuse)).plan.peak_bytes
        if qemu:
            with tempfile.TemporaryDirectory() as tmp:
                for fuse in (False, True):
                    r[f"qemu_{int(fuse)}"] = on_target(g, scheme, fuse, Path(tmp))
        print(f"{model} done", file=sys.stderr)
        out.append(r)
    return out


def table(rs: list[dict], qemu: bool) -> str:
    head = ("| model | inference arena KB: whole / bands / fused / both | training peak KB (planned): fuse off -> on |")
    sep = "|---|---|---|"
    if qemu:
        head += (" SRAM measured KB: off -> on (links at 256 KB?) | paper KB | instructions / step: off -> on |"
                 " instructions / inference: off -> on |")
        sep += "---|---|---|---|"
    lines = [head, sep]
    for r in rs:
        line = (f"| {r['model']} | {r['inf_whole'] / KB:.1f} / {r['inf_bands'] / KB:.1f} / {r['inf_fused'] / KB:.1f}"
                f" / {r['inf_both'] / KB:.1f} | {r['train_0'] / KB:.1f} -> {r['train_1'] / KB:.1f} |")
        if qemu:
            a, b = r["qemu_0"], r["qemu_1"]
            line += (f" {a['sram'] / KB:.1f} ({a['fits']}) -> {b['sram'] / KB:.1f} ({b['fits']}) |"
                     f" {PAPER_SRAM_KB[r['model']]} | {a['step']:,} -> {b['step']:,} |"
                     f" {a['infer']:,} -> {b['infer']:,} |")
        lines.append(line)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(ZOO_NAMES))
    ap.add_argument("--no-qemu", action="store_true", help="planner numbers only")
    results_md.add_flag(ap)
    args = ap.parse_args()
    qemu = not args.no_qemu
    text = table(rows(args.models, qemu), qemu)
    print(text)
    if not args.no_write:
        cpu = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
        cmd = "nice .venv/bin/python benchmarks/fused_blocks.py" + (" --no-qemu" if not qemu else "")
        section = (f"\n## Fused frozen blocks: memory and cost with / without ({datetime.date.today()})\n\n"
                   f"`{cmd}` on {platform.machine()}, {cpu} cores. 128x128, 10-class head, published schemes. "
                   "Inference arena = planned int8 forward arena; training peak = planned arena + trained tensors "
                   "in RAM; SRAM measured = .data + .bss + heap + stack high-water on QEMU. Bit-exact either way "
                   "(tests/test_fused_blocks.py, tests/test_host_zoo.py).\n\n" + text + "\n")
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
