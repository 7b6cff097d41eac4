"""microtrain's compiled training step: on the host (same measure as the peers) or on the emulated Cortex-M7.

host: ``microtrain compile MODEL --classes 10 --scheme PRESET --out DIR --json``, then the
generated model + runtime are linked with ``mt_bench_main.c`` (this folder) by gcc, which
measures the step exactly as ``peer_common.measure_steps`` does (VmRSS after ``mt_init``,
VmHWM reset after warm-up) and reports ``MT_ARENA_BYTES``.
qemu: ``microtrain compile ... --target cortex-m7`` (256 KB SRAM; if it does not fit, the row
says so and links at 512 KB to still measure it), then ``microtrain run DIR --target qemu
--data digits --steps 2 --eval 1 --json``: SRAM (.data + .bss + heap + stack high-water) and
instructions per training step as that command reports them.
When the ``compile``/``run`` verbs do not exist yet, the row says "not available yet".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import peer_common as pc

from microtrain.targets.host import HOST_OPT, host_arch_flags  # the flags of `microtrain run --target host`

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


def error_text(stderr: str) -> str:
    """The verb's error line and the line after it (the 'what is in the way' detail)."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "error:" in ln:
            return " ".join(lines[i:i + 2])[:400]
    return (lines[-1] if lines else "?")[:400]


def compile_project(model: str, scheme: str, out: Path, extra: tuple[str, ...] = ()) -> dict:
    r = cli("compile", model, "--classes", "10", "--scheme", scheme, "--out", str(out), "--json", *extra)
    if r.returncode != 0:
        raise RuntimeError(f"microtrain compile failed: {error_text(r.stderr)}")
    return last_json(r.stdout)


def report_bytes(report: dict) -> dict[str, int]:
    return {k: int(v) for k, v in report.items() if k.endswith("_bytes") and isinstance(v, int)}


def run_qemu(model: str, scheme: str, tmp: Path) -> dict:
    """Link at the 256 KB SRAM budget; if it does not fit, say so and measure it linked at 512 KB."""
    note, sram_opt = "", ()
    try:
        report = compile_project(model, scheme, tmp / "m7", ("--target", "cortex-m7"))
    except RuntimeError as e:
        if "does not fit" not in str(e):
            raise
        note = f"does not fit 256 KB SRAM ({e}); measured linked at 512 KB"
        sram_opt = ("--sram", "512KB")
        shutil.rmtree(tmp / "m7", ignore_errors=True)
        report = compile_project(model, scheme, tmp / "m7", ("--target", "cortex-m7", *sram_opt))
    r = cli("run", str(tmp / "m7"), "--target", "qemu", "--data", "digits", "--steps", "2", "--eval", "1",
            *sram_opt, "--json", timeout=3000)
    if r.returncode != 0:
        raise RuntimeError(f"microtrain run --target qemu failed: {error_text(r.stderr)}")
    doc = last_json(r.stdout)
    mem = doc.get("memory", {})
    if not isinstance(mem.get("sram_bytes"), int):
        raise RuntimeError(f"`microtrain run --json` reported no memory.sram_bytes (keys: {', '.join(doc)})")
    cost = doc.get("cost", {})
    return {"sram_bytes": mem["sram_bytes"], "sram_includes": mem.get("sram_includes", ""),
            "sram_breakdown": mem.get("breakdown", {}), "flash_bytes": mem.get("flash_bytes"),
            "train_step_instructions": cost.get("train_step_instructions_median"),
            "compile_report_bytes": report_bytes(report), "fit_note": note}


def run_host(project: Path, warmup: int, steps: int, lr: float, work: Path) -> dict:
    sources = sorted(str(p) for d in ("src", "runtime") for p in (project / d).rglob("*.c"))
    includes = sorted({str(p.parent) for p in project.rglob("*.h")})
    exe = work / "mt_bench"
    cmd = ["gcc", HOST_OPT, *host_arch_flags(), "-std=c99", "-ffp-contract=off", *[f"-I{i}" for i in includes],
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
                result["compile_report_bytes"] = report_bytes(report)
            else:
                result = run_qemu(args.model, scheme, tmp)
        except (RuntimeError, ValueError, KeyError, subprocess.TimeoutExpired) as e:
            pc.emit({**base, "status": "error", "reason": str(e)[:500]})
            return 0
    pc.emit({**base, "status": "ok", **result})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
