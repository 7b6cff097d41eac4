"""Where the host training step spends its instructions, and what compiler flags buy.

For each zoo model with its published ~100 KB scheme (and ``full`` update for the first
model): ``microtrain compile MODEL --classes 10 --scheme S --out DIR``, then the generated
model + runtime are linked in a scratch dir with a tiny driver (``DRIVER_C`` below: one
LCG-random int8 sample per step, label step % classes, lr 0.01; prints each step's loss
bits and wall time and a FNV-1a hash of every trainable tensor at the end), once per flag
set (-O2, -O3, -O3 -march=native, the host target's build -O3 -march=x86-64-v3 where the CPU has it
(AVX2: the MT_NN_VEC kernels), and with --lto -O2 -flto; always ``-std=c99 -ffp-contract=off``, never
-ffast-math). Per flag set:

- ``valgrind --tool=callgrind --toggle-collect=mt_train_step``: instructions per step,
  split by function (``callgrind_annotate``, self cost) and grouped by the runtime family
  of the function's source file: forward int8 (runtime/src/forward + quant/mt_requantize),
  backward fp32 (runtime/src/backward), update (runtime/src/update + the rounding), other
  (generated model code, libm). The fused/banded early stage is the inclusive cost of
  ``mt_inverted_bottleneck_s8``.
- wall time: median per step over rounds that alternate the flag sets (fair on a loaded box).
- bit-identity: the loss bits of every step and the trained-weights hash must equal -O2's.

    nice -n 10 .venv/bin/python benchmarks/host_profile.py [--models mbv2-w0.35] [--cg-steps 2]
        [--time-steps 5 --rounds 3] [--no-full] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import results_md

from microtrain.targets.host import HOST_OPT, host_arch_flags

ROOT = Path(__file__).resolve().parent.parent
SCHEMES = {"mbv2-w0.35": "mbv2-w0.35/99kb", "proxyless-w0.3": "proxyless-w0.3/98kb",
           "mcunet-5fps": "mcunet-5fps/99kb"}
FLAG_SETS: dict[str, tuple[str, ...]] = {"-O2": ("-O2",), "-O3": ("-O3",),
                                         "-O3 -march=native": ("-O3", "-march=native")}
if host_arch_flags():  # the host target's build (targets/host.py), with the vector kernels of MT_NN_VEC
    FLAG_SETS[" ".join((HOST_OPT, *host_arch_flags()))] = (HOST_OPT, *host_arch_flags())
EXTRA_FLAG_SETS = {"-O2 -flto": ("-O2", "-flto")}  # --lto: cross-file inlining of the kernels' helpers
BASE_CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-g")
GROUPS = ("forward int8", "backward fp32", "update", "other")

DRIVER_C = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "mt_model.h"

static int8_t input[MT_INPUT_BYTES];
/* Called through a volatile pointer so that -flto cannot inline mt_train_step into main:
 * callgrind's --toggle-collect needs the function to be entered. */
static float (*volatile train_step)(const int8_t *, int32_t) = mt_train_step;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 2, i, t;
    uint32_t s = 12345u, bits;
    unsigned long long h = 1469598103934665603ULL;
    mt_init();
    mt_set_schedule(0, 0.01f, 0u, 0u); /* a constant learning rate */
    for (i = 0; i < steps; i++) {
        double t0;
        float loss;
        for (t = 0; t < MT_INPUT_BYTES; t++) { s = s * 1664525u + 1013904223u; input[t] = (int8_t)(s >> 24); }
        t0 = now_ms();
        loss = train_step(input, (int32_t)(i % MT_NUM_CLASSES));
        t0 = now_ms() - t0;
        memcpy(&bits, &loss, sizeof bits);
        printf("step %d loss %.6f bits %08lx ms %.4f\n", i, loss, (unsigned long)bits, t0);
    }
    for (i = 0; i < MT_NUM_TRAINABLE; i++) {
        const unsigned char *p = (const unsigned char *)mt_trainable[i].data;
        uint32_t b;
        for (b = 0; b < mt_trainable[i].bytes; b++) { h ^= p[b]; h *= 1099511628211ULL; }
    }
    printf("weights_fnv %016llx\n", h);
    return 0;
}
"""

_STEP_RE = re.compile(r"^step (\d+) loss \S+ bits ([0-9a-f]{8}) ms (\S+)$", re.M)
_HASH_RE = re.compile(r"^weights_fnv ([0-9a-f]{16})$", re.M)
# callgrind_annotate line: "  1,234 (12.34%)  /path/file.c:function [/path/exe]"
_ANN_RE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S+?):(\S+)(?:\s+\[.*\])?\s*$")


def cli(*argv: str) -> subprocess.CompletedProcess:
    entry = "import sys; from microtrain.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", entry, *argv], capture_output=True, text=True, cwd=ROOT)


def compile_project(model: str, scheme: str, out: Path) -> Path:
    r = cli("compile", model, "--classes", "10", "--scheme", scheme, "--out", str(out))
    if r.returncode != 0:
        raise RuntimeError(f"microtrain compile {model} --scheme {scheme} failed:\n{r.stderr[-2000:]}")
    return out


def build(project: Path, flags: tuple[str, ...], exe: Path) -> Path:
    """The generated model + runtime (not main/mt_main.c) + DRIVER_C, with ``flags`` as the optimisation."""
    srcs = sorted(str(p) for sub in ("src", "runtime") for p in (project / sub).rglob("*.c"))
    driver = exe.parent / "hp_driver.c"
    driver.write_text(DRIVER_C)
    incs = [project / "include", project / "runtime" / "include"]
    cmd = ["gcc", *BASE_CFLAGS, *flags, *(f"-I{i}" for i in incs), str(driver), *srcs, "-o", str(exe), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"gcc {' '.join(flags)} failed:\n{r.stderr[-2000:]}")
    return exe


def parse_run(stdout: str) -> tuple[list[str], list[float], str]:
    """(loss bit patterns, ms per step, weights hash) from the driver's output."""
    steps = _STEP_RE.findall(stdout)
    m = _HASH_RE.search(stdout)
    if not steps or m is None:
        raise ValueError(f"unexpected driver output: {stdout[-300:]!r}")
    return [b for _i, b, _ms in steps], [float(ms) for _i, _b, ms in steps], m.group(1)


def family(path: str, function: str) -> str:
    """The group of a function, from the runtime folder of its source file."""
    if function in ("mt_requantize",) or "/runtime/src/forward/" in path:
        return "forward int8"
    if "/runtime/src/backward/" in path:
        return "backward fp32"
    if "/runtime/src/update/" in path or function in ("mt_round_update", "mt_update_noise"):
        return "update"
    return "other"


def group_costs(self_cost: dict[tuple[str, str], int]) -> tuple[dict[str, int], dict[str, int]]:
    """(group -> instructions, function -> instructions). Code inlined from a header (mt_nn.h) is
    listed under the header's path with the *enclosing* function's name: it goes to that function's group."""
    per_fn: dict[str, int] = {}
    fn_group: dict[str, str] = {}
    for (path, fn), n in self_cost.items():
        base = fn.split(".")[0]  # mt_nn_ib_store.isra.0 -> mt_nn_ib_store
        per_fn[base] = per_fn.get(base, 0) + n
        if path.endswith(".c"):
            fn_group[base] = family(path, base)
    groups = dict.fromkeys(GROUPS, 0)
    for fn, n in per_fn.items():
        groups[fn_group.get(fn, family("", fn))] += n
    return groups, per_fn


def parse_annotate(text: str) -> dict[tuple[str, str], int]:
    """{(file, function): instructions} from ``callgrind_annotate`` output."""
    out: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        m = _ANN_RE.match(line)
        if m and not m.group(2).startswith("PROGRAM"):
            key = (m.group(2), m.group(3))
            out[key] = out.get(key, 0) + int(m.group(1).replace(",", ""))
    return out


def callgrind(exe: Path, steps: int, work: Path) -> dict:
    """Instructions inside mt_train_step: total, per function (self), grouped, and the fused stage's inclusive."""
    cg = work / f"cg.{exe.name}.out"
    r = subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=mt_train_step",
                        f"--callgrind-out-file={cg}", str(exe), str(steps)],
                       capture_output=True, text=True, cwd=work)
    if r.returncode != 0:
        raise RuntimeError(f"valgrind failed: {r.stderr[-1000:]}")
    m = re.search(r"^(?:summary|totals): (\d+)", cg.read_text(), re.M)
    if m is None:
        raise RuntimeError(f"no instruction total in {cg}")
    total = int(m.group(1))
    if total == 0:
        raise RuntimeError(f"callgrind never entered mt_train_step in {exe} (inlined?)")
    ann = ["callgrind_annotate", "--threshold=100"]
    self_cost = parse_annotate(subprocess.run([*ann, str(cg)], capture_output=True, text=True).stdout)
    incl = parse_annotate(subprocess.run([*ann, "--inclusive=yes", str(cg)], capture_output=True, text=True).stdout)
    groups, per_fn = group_costs(self_cost)
    fused = sum(n for (_p, fn), n in incl.items() if fn == "mt_inverted_bottleneck_s8")
    return {"total": total / steps, "groups": {k: v / steps for k, v in groups.items()},
            "functions": {k: v / steps for k, v in per_fn.items()}, "fused": fused / steps,
            "stdout": r.stdout}


def profile_project(project: Path, label: str, cg_steps: int, time_steps: int, rounds: int,
                    flag_sets: dict[str, tuple[str, ...]]) -> list[dict]:
    """One row per flag set: callgrind split, median wall ms, bit-identity against -O2."""
    work = project / "hp"
    work.mkdir(exist_ok=True)
    rows = []
    exes = {}
    for i, (name, flags) in enumerate(flag_sets.items()):
        exes[name] = build(project, flags, work / f"hp_{i}")
        cg = callgrind(exes[name], cg_steps, work)
        bits, _ms, digest = parse_run(cg["stdout"])
        rows.append({"project": label, "flags": name, **cg, "bits": bits, "hash": digest, "ms": []})
        print(f"{label} {name}: {cg['total'] / 1e6:.1f} M instr/step", file=sys.stderr)
    for _ in range(rounds):  # alternate flag sets so background load hits them alike
        for row in rows:
            r = subprocess.run([str(exes[row["flags"]]), str(time_steps + 1)], capture_output=True, text=True,
                               cwd=work, check=True)
            bits, ms, digest = parse_run(r.stdout)
            row["ms"] += ms[1:]  # the first step faults in pages: warm-up
            row.setdefault("timed_bits", bits)
            row.setdefault("timed_hash", digest)
    ref = rows[0]
    for row in rows:
        row["median_ms"] = statistics.median(row["ms"])
        row["bit_identical"] = (row["bits"] == ref["bits"] and row["hash"] == ref["hash"]
                                and row["timed_bits"] == ref["timed_bits"] and row["timed_hash"] == ref["timed_hash"])
    return rows


def top_functions(row: dict, n: int = 6) -> str:
    fns = sorted(row["functions"].items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{fn} {v / row['total']:.0%}" for fn, v in fns)


def tables(rows: list[dict]) -> str:
    head = ["| project | flags | M instr / step | forward int8 | backward fp32 | update | other | fused early stage "
            "(mt_inverted_bottleneck_s8, incl.) | median ms / step | loss + weights bit-identical to -O2 |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r["groups"]
        head.append(f"| {r['project']} | {r['flags']} | {r['total'] / 1e6:.1f} | "
                    + " | ".join(f"{g[k] / 1e6:.1f} ({g[k] / r['total']:.0%})" for k in GROUPS)
                    + f" | {r['fused'] / 1e6:.1f} ({r['fused'] / r['total']:.0%}) | {r['median_ms']:.1f} | "
                    f"{'yes' if r['bit_identical'] else 'NO'} |")
    head += ["", "Top functions by self instructions (-O2):", ""]
    head += [f"- {r['project']}: {top_functions(r)}" for r in rows if r["flags"] == "-O2"]
    return "\n".join(head)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(SCHEMES))
    ap.add_argument("--cg-steps", type=int, default=2, help="training steps under callgrind per flag set")
    ap.add_argument("--time-steps", type=int, default=5, help="timed steps per round (after one warm-up step)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-full", action="store_true", help="skip the full-update project of the first model")
    ap.add_argument("--lto", action="store_true", help="also -O2 -flto")
    results_md.add_flag(ap)
    args = ap.parse_args()
    flag_sets = {**FLAG_SETS, **(EXTRA_FLAG_SETS if args.lto else {})}
    for tool in ("valgrind", "callgrind_annotate", "gcc"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (Debian packages valgrind, gcc)", file=sys.stderr)
            return 1
    jobs = [(m, SCHEMES[m]) for m in args.models] + ([] if args.no_full else [(args.models[0], "full")])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mt_hp_") as tmp:
        for model, scheme in jobs:
            project = compile_project(model, scheme, Path(tmp) / f"{model}_{scheme.replace('/', '_')}")
            rows += profile_project(project, f"{model} {scheme}", args.cg_steps, args.time_steps, args.rounds,
                                    flag_sets)
    text = tables(rows)
    print(text)
    if not args.no_write:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
        load = Path("/proc/loadavg").read_text().split()[:3]
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "?")
        gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        cmd = (f"nice -n 10 .venv/bin/python benchmarks/host_profile.py --cg-steps {args.cg_steps} "
               f"--time-steps {args.time_steps} --rounds {args.rounds}" + (" --no-full" if args.no_full else "")
               + (" --lto" if args.lto else "")
               + (f" --models {' '.join(args.models)}" if args.models != list(SCHEMES) else ""))
        section = (f"\n## Host training step profile: instructions by kernel, -O2 vs -O3 vs -march=native "
                   f"({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC)\n\n"
                   f"Command: `{cmd}`; machine: {platform.machine()}, nproc {nproc}, {cpu}, load average "
                   f"{' '.join(load)}; {gcc}. Generated project + a tiny driver (random int8 sample per step), "
                   "flags always `-std=c99 -ffp-contract=off` (no -ffast-math). Instructions: `valgrind "
                   f"--tool=callgrind --toggle-collect=mt_train_step`, {args.cg_steps} steps, per step; groups by "
                   "the runtime folder of each function's source (self cost; 'other' = generated model code and "
                   "libm; with -flto, kernels inlined into the generated code count as 'other'). Wall: median ms per "
                   "step over "
                   f"{args.rounds} rounds x {args.time_steps} steps, flag sets alternated. Bit-identical: every "
                   "step's loss bits and an FNV-1a hash of all trained tensors equal the -O2 build's.\n\n"
                   f"{text}\n")
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
