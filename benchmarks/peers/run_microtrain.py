"""microtrain's compiled training step: on the host (same measure as the peers) or on the emulated Cortex-M7.

host: ``microtrain compile MODEL --classes 10 --scheme PRESET --out DIR --json``, then the
generated model + runtime are linked with ``mt_bench_main.c`` (this folder) by gcc, which
measures the step exactly as ``peer_common.measure_steps`` does (VmRSS after ``mt_init``,
VmHWM reset after warm-up) and reports ``MT_ARENA_BYTES``.
qemu: ``microtrain compile ... --target cortex-m7`` then ``microtrain run DIR --target qemu
--steps N --json``; SRAM = .data + .bss + stack high-water as that command reports it.
When the ``compile``/``run`` verbs do not exist yet, the row says "not available yet".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import peer_common as pc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def cli(*argv: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    # microtrain.cli has no __main__; call its main() exactly as the console script does.
    entry = "import sys; from microtrain.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", entry, *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def verb_available(verb: str) -> str:
    """'' when ``microtrain VERB`` exists, else why not."""
    r = cli(verb, "--help", timeout=120)
    if r.returncode == 0:
        return ""
    return f"`microtrain {verb}` is not available yet ({(r.stderr.strip().splitlines() or ['?'])[-1][:160]})"


def last_json(text: str) -> dict:
    """The JSON document a ``--json`` verb printed (the whole stdout, or else its last JSON line)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        for line in reversed(text.strip().splitlines()):
            if line.startswith("{"):
                return json.loads(line)
    raise ValueError(f"no JSON document in output: {text[-200:]!r}")


def find_numbers(doc: object, words: tuple[str, ...], prefix: str = "") -> dict[str, float]:
    """Every numeric leaf whose dotted key contains one of ``words`` (reports are read, not assumed)."""
    found: dict[str, float] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            found.update(find_numbers(v, words, f"{prefix}{k}."))
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        key = prefix.rstrip(".")
        if any(w in key.lower() for w in words):
            found[key] = doc
    return found


def compile_project(model: str, scheme: str, out: Path, extra: tuple[str, ...] = ()) -> dict:
    r = cli("compile", model, "--classes", "10", "--scheme", scheme, "--out", str(out), "--json", *extra)
    if r.returncode != 0:
        raise RuntimeError(f"microtrain compile failed: {(r.stderr.strip().splitlines() or ['?'])[-1][:300]}")
    return last_json(r.stdout)


def run_host(project: Path, warmup: int, steps: int, lr: float, work: Path) -> dict:
    sources = sorted(str(p) for d in ("src", "runtime") for p in (project / d).rglob("*.c"))
    includes = sorted({str(p.parent) for p in project.rglob("*.h")})
    exe = work / "mt_bench"
    cmd = ["gcc", "-O2", "-std=c99", "-ffp-contract=off", *[f"-I{i}" for i in includes],
           str(HERE / "mt_bench_main.c"), *sources, "-o", str(exe), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"gcc failed on the generated project: {r.stderr.strip()[-400:]}")
    r = subprocess.run([str(exe), str(warmup), str(steps), repr(lr)], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"benchmark binary exited {r.returncode}: {r.stderr.strip()[-300:]}")
    res = last_json(r.stdout)
    res["median_ms"] = statistics.median(res["times_ms"])
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--target", choices=("host", "qemu"), default="host")
    p.add_argument("--scheme", default="")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()
    scheme = args.scheme or pc.DEFAULT_SCHEME[args.model]
    base = {"framework": "microtrain", "mode": f"compiled sparse ({args.target})", "scheme": scheme,
            "target": args.target, "threads": 1}
    for verb in ("compile",) + (("run",) if args.target == "qemu" else ()):
        why = verb_available(verb)
        if why:
            pc.emit({**base, "status": "not available yet", "reason": why})
            return 0
    with tempfile.TemporaryDirectory(prefix="mt_peers_") as tmp:
        tmp = Path(tmp)
        try:
            if args.target == "host":
                report = compile_project(args.model, scheme, tmp / "proj")
                result = run_host(tmp / "proj", args.warmup, args.steps, args.lr, tmp)
                result["compile_report_bytes"] = find_numbers(report, ("peak", "arena"))
            else:
                report = compile_project(args.model, scheme, tmp / "proj", ("--target", "cortex-m7"))
                r = cli("run", str(tmp / "proj"), "--target", "qemu", "--steps", str(max(1, args.steps // 10)),
                        "--json", timeout=3000)
                if r.returncode != 0:
                    raise RuntimeError(f"microtrain run --target qemu failed: "
                                       f"{(r.stderr.strip().splitlines() or ['?'])[-1][:300]}")
                doc = last_json(r.stdout)
                mem = find_numbers(doc, ("sram", "stack", "bss", "data", "flash"))
                sram = [v for k, v in mem.items() if k.lower().split(".")[-1] in ("sram", "sram_bytes", "total_sram")]
                result = {"sram_bytes": int(sram[0]) if sram else None, "memory_fields": mem,
                          "compile_report_bytes": find_numbers(report, ("peak", "arena"))}
        except (RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
            pc.emit({**base, "status": "error", "reason": str(e)[:500]})
            return 0
    pc.emit({**base, "status": "ok", **result})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
