"""Where the instructions of a training step go on the emulated Cortex-M7, per kernel and per graph node.

Builds the generated project of a zoo model + published scheme for the Cortex-M7 with the runtime and
model sources compiled with ``-finstrument-functions`` and ``benchmarks/profile/mt_prof_hooks.c`` linked
in: each instrumented call charges its *self* instructions (QEMU -icount, read from the start-up code's
instruction count) to (function, call site). Functions of ``mt_nn.h`` are inlined and ``mt_requantize`` is excluded
by default (``--requantize`` instruments it: its calls are then counted, at ~10 extra instructions each),
so a kernel's count includes them. Call sites in ``mt_model.c`` are mapped to the graph node named by the
comment above the call, and to the phase (``run_infer`` = one inference, ``run_train`` = the training step).
Instrumentation adds a few instructions per call (call + return into each hook), so totals are within
~0.1 % of the uninstrumented firmware's; use ``benchmarks/target_cost.py`` for the numbers that count.

    .venv/bin/python benchmarks/kernel_profile.py [--models mbv2-w0.35 ...] [--scheme NAME] [--by node|kernel]
        [--requantize] [--stream-input] [--top 40]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile

import microtrain.compiler  # noqa: F401
from microtrain.codegen.driver_files import write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.frontend.heads import new_head
from microtrain.models import ZOO_NAMES, load_model
from microtrain.report.inspect import MACS_RULES
from microtrain.sparse.presets import load_scheme
from microtrain.targets import cortex_m7
from microtrain.targets.cortex_m7 import run_elf

HERE = Path(__file__).parent
HOOKS = HERE / "profile" / "mt_prof_hooks.c"
SCHEMES = {"mbv2-w0.35": "mbv2-w0.35/99kb", "proxyless-w0.3": "proxyless-w0.3/98kb",
           "mcunet-5fps": "mcunet-5fps/99kb"}
PHASES = {"run_infer": "infer", "mt_infer": "infer", "run_train": "train", "mt_train_step": "train"}
_PROF_RE = re.compile(r"^prof ([0-9a-f]{8}) ([0-9a-f]{8}) ([0-9a-f]{8}) (\d+) (\d+) (\d+)$", re.M)


def ticks_to_instructions(ticks: int) -> float:
    return float(ticks)  # the hooks count instructions (mt_target_instructions) already


def functions_of(elf: Path) -> list[tuple[int, int, str]]:
    """(start, end, name) of every FUNC symbol, Thumb bit cleared, sorted."""
    out = []
    with open(elf, "rb") as f:
        for sec in ELFFile(f).iter_sections():
            if sec.header.sh_type != "SHT_SYMTAB":
                continue
            for s in sec.iter_symbols():
                if s["st_info"]["type"] == "STT_FUNC" and s["st_size"] > 0:
                    a = s["st_value"] & ~1
                    out.append((a, a + s["st_size"], s.name))
    return sorted(out)


def name_at(funcs, addr: int) -> str:
    addr &= ~1
    for a, b, n in funcs:
        if a <= addr < b:
            return n
    return f"0x{addr:08x}"


def node_of_sites(elf: Path, sites: list[int], model_c: Path) -> dict[int, str]:
    """Call site -> graph node (the comment line above the call in mt_model.c)."""
    if not sites:
        return {}
    proc = subprocess.run(["arm-none-eabi-addr2line", "-e", str(elf), *[f"0x{s & ~1:x}" for s in sites]],
                          capture_output=True, text=True, check=True)
    lines = model_c.read_text().splitlines()
    out = {}
    for s, loc in zip(sites, proc.stdout.splitlines(), strict=True):
        m = re.match(r"(.*):(\d+)", loc)
        node = "?"
        if m and m.group(1).endswith("mt_model.c"):
            i = int(m.group(2)) - 1
            while i > 0 and not lines[i - 1].strip().startswith("/*"):
                i -= 1
            j = i - 1
            while j > 0 and lines[j].strip().startswith("/*") and lines[j - 1].strip().startswith("/*"):
                j -= 1  # the first of a run of comment lines names the node
            node = re.sub(r"^/\*\s*|\s*\*/$", "", lines[j].strip()) if j >= 0 else "?"
        out[s] = node
    return out


def profile(model: str, scheme: str, root: Path, requantize: bool, stream: bool, helpers: bool = False) -> list[dict]:
    graph = new_head(load_model(model), 10)
    step = compile_training(graph, load_scheme(scheme, graph), CompileOptions(stream_input=stream))
    out = generate_project(step, graph, root / model)
    sources, includes = cortex_m7.project_sources(out)
    exclude = ("mt_model.c,mt_main.c" + ("" if helpers else ",runtime/include/")
               + ("" if requantize else ",mt_requantize.c"))
    cfg = cortex_m7.BuildConfig(sram=1 << 20, flash=2 << 20, wrap_model=True,
                                extra_cflags=["-finstrument-functions",
                                              f"-finstrument-functions-exclude-file-list={exclude}"])
    elf = cortex_m7.build_elf([*sources, HOOKS], includes, out / "build" / "prof", cfg, name="prof")
    rng = np.random.default_rng(0)
    shape = graph.tensors[graph.inputs[0]].shape[1:]
    x = rng.integers(-128, 128, (1,) + shape).astype(np.int8)
    y = rng.integers(0, 10, 1).astype(np.int32)
    work = write_driver_files(out / "prof_run", x, y, steps=1, lr=0.01, x_test=x, y_test=y, eval_count=1)
    qr = run_elf(elf, work, timeout=3600)
    if qr.returncode != 0:
        raise SystemExit(f"firmware failed ({qr.returncode}):\n{qr.stdout[-2000:]}{qr.stderr[-2000:]}")
    funcs = functions_of(elf)
    raw = [(int(f, 16), int(s, 16), int(a, 16), (int(hi) << 32) + int(lo), int(c))
           for f, s, a, hi, lo, c in _PROF_RE.findall(qr.stdout)]
    outer = {s: f for f, s, a, _, _ in raw if a == 0}  # model call site -> kernel
    nodes = node_of_sites(elf, sorted(outer), out / "src" / "mt_model.c")
    rows = []
    for fn, site, anchor, ticks, calls in raw:
        anchor = anchor or site
        kernel = name_at(funcs, outer.get(anchor, 0))
        rows.append({"function": name_at(funcs, fn), "kernel": kernel, "node": nodes.get(anchor, "?"),
                     "phase": PHASES.get(name_at(funcs, anchor), "other"),
                     "instructions": ticks_to_instructions(ticks), "calls": calls})
    macs = {n.name: MACS_RULES[n.op](n, step.graph) for n in step.graph.nodes if n.op in MACS_RULES}
    for r in rows:
        r["macs"] = macs.get(r["node"].split(" (")[0], 0)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(ZOO_NAMES))
    ap.add_argument("--scheme", default=None, help="scheme preset (default: the published ~100 KB one)")
    ap.add_argument("--by", choices=("node", "kernel"), default="kernel")
    ap.add_argument("--requantize", action="store_true", help="instrument mt_requantize too")
    ap.add_argument("--stream-input", action="store_true")
    ap.add_argument("--helpers", action="store_true",
                    help="instrument the inline helpers of mt_nn.h too (a finer split; perturbs the code)")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            rows = profile(model, args.scheme or SCHEMES[model], Path(tmp), args.requantize, args.stream_input,
                           args.helpers)
            for phase in ("infer", "train"):
                agg: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # inclusive, own calls, MACs
                inner: dict[str, float] = defaultdict(float)
                for r in rows:
                    if r["phase"] != phase:
                        continue
                    key = f"{r['node']}  [{r['kernel']}]" if args.by == "node" else r["kernel"]
                    agg[key][0] += r["instructions"]
                    if r["function"] == r["kernel"]:
                        agg[key][1] += r["calls"]
                        agg[key][2] += r["macs"]
                    else:
                        inner[f"{r['kernel']} -> {r['function']}"] += r["instructions"]
                total = sum(v[0] for v in agg.values())
                total_macs = sum(v[2] for v in agg.values())
                print(f"\n{model} {args.scheme or SCHEMES[model]}: {phase}, {total / 1e6:.2f} M instructions "
                      f"in runtime kernels (model glue and driver not counted), {total_macs / 1e6:.2f} M MACs"
                      + (f" = {total_macs / total:.3f} MAC/instruction" if phase == "infer" else ""))
                for key, (ins, calls, mac) in sorted(agg.items(), key=lambda kv: -kv[1][0])[:args.top]:
                    rate = f"{mac / ins:5.2f} MAC/i" if mac else " " * 11
                    print(f"  {ins / 1e6:9.3f} M {100 * ins / total:5.1f} %  {rate} {int(calls):6d} calls  {key}")
                if inner:
                    print("  of which in instrumented callees:")
                    for k, v in sorted(inner.items(), key=lambda kv: -kv[1])[:args.top]:
                        print(f"    {v / 1e6:9.3f} M  {k}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
