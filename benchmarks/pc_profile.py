"""Where the instructions of the Cortex-M7 firmware go, by source line: a QEMU plugin count per address.

Builds the generated project of a zoo model + published scheme for the Cortex-M7 exactly as
``benchmarks/target_cost.py`` does (no instrumentation: the code measured is the code shipped), runs it
on ``qemu-system-arm -M mps2-an500 -icount`` with ``benchmarks/profile/mt_pc_counts.c`` loaded as a TCG
plugin, which counts the executions of every instruction address, and maps the addresses to source
with ``arm-none-eabi-addr2line -f -i``: the containing function (``--by function``), the innermost
inlined function (``--by inline``) or the innermost source line (``--by line``). Unlike
``benchmarks/kernel_profile.py`` this splits the inlined helpers of ``mt_nn*.h`` without perturbing
them. The run is one training step, then one inference (the driver's evaluation), so a forward kernel's
count is two forwards; ``--function NAME`` keeps the addresses of one function.

    .venv/bin/python benchmarks/pc_profile.py [--models mbv2-w0.35 ...] [--by line|inline|function]
        [--function mt_inverted_bottleneck_s8] [--top 40]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

import microtrain.compiler  # noqa: F401
from microtrain.codegen.driver_files import write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.frontend.heads import new_head
from microtrain.models import load_model
from microtrain.sparse.presets import load_scheme
from microtrain.targets import cortex_m7
from microtrain.targets.mcu.qemu import qemu_command

HERE = Path(__file__).parent
PLUGIN = HERE / "profile" / "mt_pc_counts.c"
SCHEMES = {"mbv2-w0.35": "mbv2-w0.35/99kb", "proxyless-w0.3": "proxyless-w0.3/98kb",
           "mcunet-5fps": "mcunet-5fps/99kb"}


def build_plugin(out: Path) -> Path:
    so = out / "mt_pc_counts.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(so), str(PLUGIN)], check=True)
    return so


def pc_counts(model: str, scheme: str, root: Path, plugin: Path) -> tuple[Path, dict[int, int]]:
    graph = new_head(load_model(model), 10)
    step = compile_training(graph, load_scheme(scheme, graph), CompileOptions())
    out = generate_project(step, graph, root / model)
    elf = cortex_m7.build(out, sram="256KB")
    rng = np.random.default_rng(0)
    shape = graph.tensors[graph.inputs[0]].shape[1:]
    x = rng.integers(-128, 128, (1,) + shape).astype(np.int8)
    y = rng.integers(0, 10, 1).astype(np.int32)
    work = write_driver_files(out / "pc_run", x, y, steps=1, lr=0.01, x_test=x, y_test=y, eval_count=1)
    counts_file = work / "pc_counts.txt"
    cmd = qemu_command(cortex_m7.CORE, elf) + ["-plugin", f"{plugin},out={counts_file}"]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"firmware failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    counts: dict[int, int] = defaultdict(int)
    for line in counts_file.read_text().splitlines():
        a, c = line.split()
        counts[int(a, 16)] += int(c)
    return elf, counts


def locate(elf: Path, addrs: list[int]) -> dict[int, list[tuple[str, str]]]:
    """address -> [(function, file:line), ...] innermost inline first, outermost (the symbol) last."""
    proc = subprocess.run(["arm-none-eabi-addr2line", "-a", "-f", "-i", "-e", str(elf)],
                          input="".join(f"0x{a:x}\n" for a in addrs), capture_output=True, text=True, check=True)
    out: dict[int, list[tuple[str, str]]] = {}
    cur = None
    lines = proc.stdout.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("0x"):
            cur = int(lines[i], 16)
            out[cur] = []
            i += 1
            continue
        fn, loc = lines[i], lines[i + 1] if i + 1 < len(lines) else "??:0"
        loc = loc.split(" (discriminator")[0]
        out[cur].append((fn, loc.rsplit("/", 1)[-1]))
        i += 2
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["mbv2-w0.35"])
    ap.add_argument("--by", choices=("line", "inline", "function"), default="function")
    ap.add_argument("--function", default=None, help="only the addresses inside this function (the symbol)")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--keep", type=Path, default=None,
                    help="build and run in this directory and keep it (the ELF and pc_run/pc_counts.txt, for objdump)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        tmp = str(args.keep or tmp)
        plugin = build_plugin(Path(tmp))
        for model in args.models:
            elf, counts = pc_counts(model, SCHEMES[model], Path(tmp), plugin)
            where = locate(elf, sorted(counts))
            total = sum(counts.values())
            agg: dict[str, int] = defaultdict(int)
            for a, c in counts.items():
                chain = where.get(a) or [("??", "??:0")]
                if args.function and chain[-1][0] != args.function:
                    continue
                if args.by == "function":
                    key = chain[-1][0]
                elif args.by == "inline":
                    key = chain[0][0] + "  (in " + chain[-1][0] + ")"
                else:
                    key = f"{chain[0][1]}  {chain[0][0]}  (in {chain[-1][0]})"
                agg[key] += c
            shown = sum(agg.values())
            print(f"\n{model} {SCHEMES[model]}: {total / 1e6:.2f} M instructions in the run (1 training step + "
                  f"1 inference + driver)" + (f", {shown / 1e6:.2f} M in {args.function}" if args.function else ""))
            for key, c in sorted(agg.items(), key=lambda kv: -kv[1])[:args.top]:
                print(f"  {c / 1e6:9.3f} M {100 * c / shown:5.1f} %  {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
