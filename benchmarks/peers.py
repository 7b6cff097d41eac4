"""One training step side by side: PyTorch, TensorFlow, MNN and microtrain, memory and time.

    .venv/bin/python benchmarks/peers.py [--models mbv2-w0.35,...] [--frameworks pytorch,mnn,...]
                                         [--steps 20] [--warmup 3] [--json] [--no-write]

For each zoo model (128x128, batch 1, 10 classes) every row runs in its own process
(``benchmarks/peers/run_*.py``), builds the same architecture (read from the zoo file,
pretrained weights dequantized) in its framework, warms up, then measures. The memory
measure, identical for every row: peak RSS during the measured steps (VmHWM reset after
warm-up) minus RSS after importing the framework and building the model. Time: median of
the measured steps. Peer frameworks come from the ``peers`` extra (``--install-peers`` installs it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import results_md

ROOT = Path(__file__).resolve().parent.parent
RUNNERS = Path(__file__).resolve().parent / "peers"
sys.path.insert(0, str(RUNNERS))
import peer_common as pc  # noqa: E402

MODELS = ("mbv2-w0.35", "proxyless-w0.3", "mcunet-5fps")
# row id -> (runner script, extra runner args, label)
ROWS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "pytorch-full": ("run_torch.py", ("--mode", "full"), "PyTorch full update"),
    "pytorch-full-bn": ("run_torch.py", ("--mode", "full", "--bn"), "PyTorch full update +BN"),
    "pytorch-sparse": ("run_torch.py", ("--mode", "sparse"), "PyTorch sparse (scheme)"),
    "tensorflow-full": ("run_tf.py", ("--mode", "full"), "TensorFlow full update"),
    "tensorflow-full-bn": ("run_tf.py", ("--mode", "full", "--bn"), "TensorFlow full update +BN"),
    "tensorflow-sparse": ("run_tf.py", ("--mode", "sparse"), "TensorFlow sparse (scheme)"),
    "mnn-full": ("run_mnn.py", ("--mode", "full"), "MNN full update"),
    "mnn-full-bn": ("run_mnn.py", ("--mode", "full", "--bn"), "MNN full update +BN"),
    "microtrain-host": ("run_microtrain.py", ("--target", "host"), "microtrain compiled (host)"),
    "microtrain-qemu": ("run_microtrain.py", ("--target", "qemu"), "microtrain compiled (Cortex-M7 SRAM)"),
}
PAPER_MBV2_KB = {"TensorFlow": 652 * 1024, "PyTorch": 303 * 1024, "MNN": 41.5 * 1024, "TTE (sparse+reorder)": 141}
MEMORY_DEFINITION = (
    "Peer rows and microtrain (host): peak resident set size of the row's own process during the measured "
    "training steps (Linux VmHWM, reset after the warm-up steps by writing 5 to /proc/self/clear_refs) minus "
    "its resident set size after importing the framework and building the model (weights loaded, optimizer "
    "created). It therefore counts what training adds: activations kept for backward, gradients, optimizer "
    "work buffers, allocator caching, and anything the framework allocates lazily on the first steps; it "
    "excludes the framework's code and the model weights. 'Process peak' is the absolute VmHWM. "
    "microtrain (Cortex-M7): SRAM of the linked firmware after the run, as `microtrain run --target qemu "
    "--json` reports it (.data + .bss + stack high-water, plus heap if the C library took one). "
    "Framework allocator statistics: PyTorch has none "
    "on CPU; TensorFlow's get_memory_info refuses the CPU device; MNN's Python API exposes none.")


NOTES = """Notes on the rows:
- PyTorch sparse: `requires_grad` only on the updated tensors, so autograd saves nothing below the earliest
  updated layer and computes no gradient for frozen tensors. What PyTorch cannot avoid: a partially updated
  layer's *full* weight gradient is computed and stored, then a hook zeroes the frozen channels; the saved input
  of such a layer is the whole fp32 activation (not the kept channels' slice); ReLU6 keeps its fp32 input
  (not a 1-bit mask); gradients are materialised before `optimizer.step()` instead of applied in place.
- TensorFlow sparse: the GradientTape is asked only for the updated variables (TF prunes the backward graph);
  sub-tensor ratios multiply the full kernel gradient by a channel mask, as in PyTorch.
- MNN (mnn 3.6.1 Python API): training needs `MNN.expr.lazy_eval(True)` (otherwise `SGD.step` returns False and
  nothing is updated); `reduce_mean` passes no gradient, so pooling is `avg_pool` over the whole map; parameters
  loaded with `load_parameters` must be `fix_as_trainable()` or they stay frozen. Its optimizer takes the whole
  module, so there is no MNN sparse row. 'trained tensors moved a/b' checks that every trained tensor changed
  (with +BN, b also counts BatchNorm's running statistics).
- +BN rows: the conv weights are the pretrained folded ones, large next to BatchNorm's normalisation, so BN's
  scale invariance makes their SGD steps ~1e-10, below fp32 resolution: those gradients are computed and applied
  (the memory and time are real) but the conv weights do not change, hence e.g. 103/155 tensors moved.
- microtrain host: the generated model and runtime linked with `benchmarks/peers/mt_bench_main.c` (the host
  target's flags: gcc -O3, -march=x86-64-v3 where the CPU has it), same measure as the peers; 'arena' is
  MT_ARENA_BYTES, the planned arena of the compiled step. Its delta also counts the first touch of the program's
  const weights and code (file-backed pages, faulted in lazily during the first steps), which the peers had
  already loaded into memory before their baseline."""


def peers_extra(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The pinned requirements of the ``peers`` extra (the one place their versions are written)."""
    import tomllib

    doc = tomllib.loads(pyproject.read_text())
    return list(doc["project"]["optional-dependencies"]["peers"])


def install_peers() -> None:
    """pip-install the peers extra into this interpreter's environment (the project venv)."""
    cmd = [sys.executable, "-m", "pip", "install", *peers_extra()]
    print(f"[peers] {' '.join(cmd)}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def select_rows(spec: str) -> list[str]:
    """Row ids from a comma list of row ids (exact) or framework prefixes (``pytorch`` = every pytorch row)."""
    if spec in ("", "all"):
        return list(ROWS)
    chosen: list[str] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        hits = [item] if item in ROWS else [r for r in ROWS if r.startswith(item + "-")]
        if not hits:
            raise SystemExit(f"peers.py: unknown framework/row {item!r}; choose from {', '.join(ROWS)}")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def run_row(row: str, model: str, arch: Path, weights: Path, args: argparse.Namespace) -> dict:
    script, extra, label = ROWS[row]
    cmd = [sys.executable, str(RUNNERS / script), *extra, "--warmup", str(args.warmup), "--steps", str(args.steps)]
    if script == "run_microtrain.py":
        cmd += ["--model", model]
    else:
        cmd += ["--arch", str(arch), "--weights", str(weights), "--threads", str(args.threads)]
    print(f"[peers] {model} {row} ...", file=sys.stderr, flush=True)
    base = {"row": row, "label": label, "model": model}
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=RUNNERS, env=env)
    except subprocess.TimeoutExpired:
        return {**base, "status": "error", "reason": f"timed out after {args.timeout} s"}
    lines = [ln for ln in r.stdout.strip().splitlines() if ln.startswith("{")]
    if r.returncode == 0 and lines:
        res = json.loads(lines[-1])
        return {**base, "status": res.pop("status", "ok"), **res}
    err = r.stderr.strip().splitlines()
    reason = err[-1][:400] if err else f"exit code {r.returncode}, no output"
    if "ModuleNotFoundError" in reason:
        reason += " (install the peers extra: rerun with --install-peers, or .venv/bin/pip install -e '.[peers]')"
    return {**base, "status": "error", "reason": reason}


def add_ratios(results: list[dict]) -> None:
    """time / microtrain host time, and memory / microtrain Cortex-M SRAM, per model."""
    for model in {r["model"] for r in results}:
        rows = [r for r in results if r["model"] == model]
        host = next((r for r in rows if r["row"] == "microtrain-host" and r.get("status") == "ok"), None)
        sram = next((r.get("sram_bytes") for r in rows if r["row"] == "microtrain-qemu" and r.get("status") == "ok"),
                    None)
        for r in rows:
            if host and r.get("median_ms") is not None:
                r["time_vs_microtrain_host"] = r["median_ms"] / host["median_ms"]
            if sram and r.get("delta_kb") is not None:
                r["mem_vs_microtrain_sram"] = r["delta_kb"] * 1024 / sram
                r["peak_vs_microtrain_sram"] = r["peak_rss_kb"] * 1024 / sram


def fmt_kb(kb: float | None) -> str:
    if kb is None:
        return "-"
    if kb >= 1024:
        return f"{kb / 1024:.1f} MB"
    return f"{kb:.0f} KB"


def table_rows(results: list[dict]) -> list[list[str]]:
    out = []
    for r in results:
        if r.get("status") != "ok":
            out.append([r["model"], r["label"], "-", "-", "-", "-", f"{r.get('status')}: {r.get('reason', '')}"])
            continue
        if r["row"] == "microtrain-qemu":
            sram = r.get("sram_bytes")
            b = r.get("sram_breakdown", {})
            detail = ", ".join(f"{k} {b[k] / 1024:.1f} KB" for k in ("arena", "trainable_weights", "driver_buffers",
                                                                       "stack", "heap") if b.get(k))
            note = f"SRAM = {r.get('sram_includes') or '.data + .bss + stack high-water'}"
            note += f" ({detail})" if detail else ""
            if r.get("train_step_instructions"):
                note += f"; {r['train_step_instructions'] / 1e6:.0f} M instructions/step"
            if r.get("fit_note"):
                note += f"; {r['fit_note']}"
            out.append([r["model"], r["label"], fmt_kb(sram / 1024 if sram else None), "-", "-", "-", note])
            continue
        ratio = r.get("time_vs_microtrain_host")
        note = f"trained tensors moved {r['trained_tensors_changed']}" if "trained_tensors_changed" in r else ""
        if "arena_bytes" in r:
            note = f"arena {r['arena_bytes'] / 1024:.1f} KB"
        if r.get("mem_vs_microtrain_sram"):
            note += (f"; {r['mem_vs_microtrain_sram']:.0f}x (delta) / {r['peak_vs_microtrain_sram']:.0f}x "
                     "(process peak) the Cortex-M SRAM")
        out.append([r["model"], r["label"], fmt_kb(r["delta_kb"]), fmt_kb(r["peak_rss_kb"]),
                    f"{r['median_ms']:.1f}", f"{ratio:.2f}x" if ratio else "-", note])
    return out


HEADER = ["model", "row", "train memory (delta)", "process peak", "ms/step (median)", "time / microtrain host", "notes"]


def format_table(results: list[dict]) -> str:
    """Plain-text table for the terminal."""
    rows = [HEADER] + table_rows(results)
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(HEADER) - 1)]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
        if k == 0:
            lines.append("-" * (sum(widths) + 2 * len(widths) + 5))
    return "\n".join(lines)


def format_markdown(results: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table_rows(results)]
    return "\n".join(lines)


def machine() -> str:
    cpu = ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{results_md.machine()}, {cpu}, Linux {platform.release()}, "
            f"load average {load} (shared machine: times are noisy, memory is not)")


def chart_bars(results: list[dict], model: str) -> list[tuple[str, float | None, float, str]]:
    """(label, delta KB or None, total KB, colour) per measured row of ``model``, then the paper's (MbV2 only).

    total = the process peak for processes, the SRAM for the Cortex-M row, the published figure for the paper.
    """
    bars = []
    for r in (r for r in results if r["model"] == model and r.get("status") == "ok"):
        if r["row"] == "microtrain-qemu":
            if r.get("sram_bytes"):
                bars.append((r["label"], None, r["sram_bytes"] / 1024, "tab:green"))
        elif r.get("delta_kb") is not None:
            colour = "tab:green" if r["row"].startswith("microtrain") else "tab:blue"
            bars.append((r["label"], float(r["delta_kb"]), float(r["peak_rss_kb"]), colour))
    if model == "mbv2-w0.35":
        bars += [(f"paper: {name}", None, float(kb), "0.55") for name, kb in PAPER_MBV2_KB.items()]
    return bars


def draw_chart(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in results}, key=lambda m: MODELS.index(m) if m in MODELS else 99)
    per_model = {m: chart_bars(results, m) for m in models}
    heights = [max(1, len(per_model[m])) for m in models]
    fig, axes = plt.subplots(len(models), 1, figsize=(10, 1.2 + 0.36 * sum(heights)), squeeze=False, sharex=True,
                             gridspec_kw={"height_ratios": heights})
    for ax, model in zip(axes[:, 0], models, strict=True):
        bars = per_model[model]
        for i, (_, delta, total, colour) in enumerate(bars):
            # light bar: the whole process (or SRAM / paper figure); dark bar on top: what the step adds
            ax.barh(i, total, color=colour, alpha=0.35 if delta is not None else 0.9, height=0.75)
            if delta is not None:
                ax.barh(i, delta, color=colour, height=0.75)
            text = f" {fmt_kb(total)}" if delta is None else f" step +{fmt_kb(delta)} / process {fmt_kb(total)}"
            ax.text(total, i, text, va="center", fontsize=7)
        ax.set_yticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(f"{model}, 128x128, batch 1: memory of one training step", fontsize=9)
    axes[-1, 0].set_xlabel("KB (1024 B), log scale. Dark: peak RSS delta of the step; light: process peak RSS; "
                           "green solid: Cortex-M7 SRAM; grey: the paper", fontsize=8)
    axes[-1, 0].set_xlim(right=axes[-1, 0].get_xlim()[1] * 30)  # room for the labels
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_lines(results: list[dict]) -> list[str]:
    """The two questions of the issue, answered per model from the measured rows."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in results):
        rows = {r["row"]: r for r in results if r["model"] == model and r.get("status") == "ok"}
        torch_full, torch_sparse = rows.get("pytorch-full"), rows.get("pytorch-sparse")
        host, m7 = rows.get("microtrain-host"), rows.get("microtrain-qemu")
        if torch_full and m7 and m7.get("sram_bytes"):
            sram_kb = m7["sram_bytes"] / 1024
            lines.append(f"- {model}: PyTorch full update peak / microtrain Cortex-M7 SRAM ({sram_kb:.0f} KB) = "
                         f"{torch_full['peak_rss_kb'] / sram_kb:.0f}x by process peak "
                         f"({fmt_kb(torch_full['peak_rss_kb'])}), {torch_full['delta_kb'] / sram_kb:.0f}x by the "
                         f"step's own delta ({fmt_kb(torch_full['delta_kb'])}); the paper: 303 MB / 141 KB = 2200x"
                         + (" (MbV2)" if model == "mbv2-w0.35" else " for MbV2") + ".")
        if torch_sparse and host:
            ratio = host["median_ms"] / torch_sparse["median_ms"]
            verdict = "faster" if ratio < 1 else "slower"
            lines.append(f"- {model}: microtrain host step {host['median_ms']:.1f} ms vs PyTorch sparse (same "
                         f"scheme) {torch_sparse['median_ms']:.1f} ms: microtrain is "
                         f"{max(ratio, 1 / ratio):.1f}x {verdict}.")
    return lines


HOST_STEP_WHY = (
    "What the host step runs: the device's C kernels (single thread), built with the host target's flags (gcc -O3, "
    "plus -march=x86-64-v3 where the CPU has it: targets/host.py). With AVX2 the int8 1x1 and depthwise "
    "convolutions and the fused block's fp32 backward run in 256-bit vectors (MT_NN_VEC, docs/targets.md), bit-exact "
    "with the portable C and the device; without it, the portable C, where PyTorch and TensorFlow still call "
    "vectorised fp32 kernels (oneDNN/MKL). The step is planned for memory, not speed (fused blocks on a ring of "
    "rows, masks and in-place updates element by element). The device-relevant cost is the deterministic "
    "instruction count on the Cortex-M7 row.")


def results_section(results: list[dict], command: str, args: argparse.Namespace, chart: Path | None) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    missing = [r for r in results if r.get("status") != "ok"]
    parts = [
        "## Peers: one training step in PyTorch, TensorFlow, MNN and microtrain (benchmarks/peers.py)", "",
        f"Command: `{command}`  ", f"Date: {now}  ", f"Machine: {machine()}  ",
        f"Setup: 128x128 RGB, batch 1, 10-class head, SGD without momentum, lr 1e-3, {args.warmup} warm-up steps, "
        f"median of {args.steps} measured steps, {args.threads} thread(s) per framework, each row in its own "
        "process. Architecture and pretrained weights (dequantized) read from the zoo file; ReLU6 where the zoo "
        "folds it; +BN rows add BatchNorm in training mode after every conv (convs then without bias). Sparse "
        "rows use the published scheme (biases of the last n convs, weights of the listed convs on the first "
        "ratio x channels, the classifier).", "",
        f"Memory definition: {MEMORY_DEFINITION}", "",
        format_markdown(results), "",
        "Paper (MbV2-w0.35, batch 1, peak training memory): TensorFlow 652 MB, PyTorch 303 MB, MNN 41.5 MB, "
        "TTE sparse update + reordering 141 KB. The paper counts the whole process; the closest column here is "
        "'process peak' (which includes the framework's own code and libraries); 'train memory (delta)' is "
        "what the training step itself adds.", "",
        NOTES, "",
    ]
    summary = summary_lines(results)
    if summary:
        parts += ["Summary:", "", *summary, "", HOST_STEP_WHY, ""]
    if chart is not None:
        parts += [f"![memory of one training step, log scale]({os.path.relpath(chart, ROOT / 'docs')})", ""]
    if missing:
        parts += ["Not measured in this run:", ""]
        parts += [f"- {r['model']} / {r['label']}: {r.get('status')}: {r.get('reason', '')}" for r in missing]
        parts.append("")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list (default: {','.join(MODELS)})")
    p.add_argument("--frameworks", default="all",
                   help=f"comma list of rows or framework prefixes (pytorch, tensorflow, mnn, microtrain); rows: "
                        f"{', '.join(ROWS)}")
    p.add_argument("--steps", type=int, default=20, help="measured steps per row (median reported)")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured steps first")
    p.add_argument("--threads", type=int, default=1, help="threads per peer framework (microtrain is single-threaded)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per row before it is marked failed")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of the table")
    p.add_argument("--install-peers", action="store_true",
                   help="first pip-install the peers extra (tensorflow-cpu, mnn; pinned in pyproject.toml)")
    results_md.add_flag(p, also=" nor draw the chart")
    p.add_argument("--chart", type=Path, default=ROOT / "docs" / "img" / "peers.png")
    args = p.parse_args(argv)
    if args.install_peers:
        install_peers()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rows = select_rows(args.frameworks)
    import numpy as np

    from microtrain.frontend.safe_pickle import load_torch_zip
    from microtrain.models import zoo_model_path

    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="peers_") as tmp:
        for model in models:
            zoo = load_torch_zip(zoo_model_path(model))
            arch = Path(tmp) / f"{model}.json"
            arch.write_text(json.dumps(pc.arch_from_zoo(zoo, model)))
            weights = Path(tmp) / f"{model}.npz"
            np.savez(weights, **pc.zoo_float_weights(zoo))
            results += [run_row(row, model, arch, weights, args) for row in rows]
    add_ratios(results)
    command = results_md.command("benchmarks/peers.py", argv or None)
    if not args.no_write:
        draw_chart(results, args.chart)
        results_md.append(results_section(results, command, args, args.chart))
    if args.json:
        print(json.dumps({"command": command, "machine": machine(), "memory_definition": MEMORY_DEFINITION,
                          "results": results}, indent=1))
    else:
        print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
