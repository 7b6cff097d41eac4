"""Memory ladder: peak memory of the compiled training step of the three zoo models.

For each model (128x128, new 10-class head): full update, then every published sparse
scheme without and with reordering (per-channel fused gradient+update), and with reordering
plus `--stream-input` (image rows read on demand instead of a whole input buffer; only where
no trained layer reads the input), plus the int8 inference arena alone. Peak = planned
arena (input, activations, saved activations, masks, gradients, weight-gradient buffers) +
trained weights/biases in RAM; excludes stack, driver buffers and flash. Appends a section to docs/RESULTS.md.

    .venv/bin/python benchmarks/memory_ladder.py [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys

import results_md

from microtrain.compiler.hoist_masks import forward_end
from microtrain.compiler.pipeline import CompileOptions, compile_inference, compile_training
from microtrain.frontend.heads import new_head
from microtrain.models import ZOO_NAMES, load_model
from microtrain.sparse.presets import PUBLISHED, load_scheme

PAPER = {  # KB, "On-Device Training Under 256KB Memory": full / sparse / sparse + reorder
    "mbv2-w0.35": (2939, 335, 141), "proxyless-w0.3": (2745, None, 135), "mcunet-5fps": (3650, None, 173)}
KB = 1024


def _row(graph, scheme_name: str, options: CompileOptions) -> dict:
    step = compile_training(graph, load_scheme(scheme_name, graph), options)
    plan = step.plan
    bd = plan.peak_breakdown()
    live = plan.live_bytes()
    fwd = forward_end(step.graph)
    backward_live = max(live[fwd + 1:], default=0)
    parts = {k: v for k, v in bd.items() if k not in ("at_step", "trainable") and v}
    dominant = max(parts, key=parts.get) if parts else "-"
    at = bd["at_step"]
    where = "input" if at < 0 else step.graph.nodes[at].name
    return {"peak": plan.peak_bytes, "arena": plan.arena_bytes, "trainable": plan.trainable_bytes,
            "backward_live": backward_live, "dominant": f"{dominant} {parts.get(dominant, 0) / KB:.0f} KB at {where}"}


def ladder(models=ZOO_NAMES) -> list[dict]:
    rows = []
    for model in models:
        graph = new_head(load_model(model), 10)
        inf = compile_inference(graph).arena_bytes
        full_nr = _row(graph, "full", CompileOptions(reorder=False))
        full_r = _row(graph, "full", CompileOptions())
        rows.append({"model": model, "scheme": "full", "inference": inf, "no_reorder": full_nr, "reorder": full_r})
        for budget in PUBLISHED[model]:
            name = f"{model}/{budget}"
            rows.append({"model": model, "scheme": name, "inference": inf,
                         "no_reorder": _row(graph, name, CompileOptions(reorder=False)),
                         "reorder": _row(graph, name, CompileOptions()),
                         "stream": _row(graph, name, CompileOptions(stream_input=True))})
        print(f"{model} done", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | scheme | no reorder: peak KB (arena + trained) | reorder: peak KB (arena + trained) | "
             "reorder: backward live KB | reorder: what dominates the peak | reorder + stream-input: peak KB "
             "(arena + trained), what dominates | inference arena KB | paper KB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        nr, re_ = r["no_reorder"], r["reorder"]
        paper = PAPER[r["model"]]
        ref = (f"{paper[0]} (full)" if r["scheme"] == "full"
               else f"{paper[1] or '-'} / {paper[2]} (sparse / +reorder)")
        st = r.get("stream")
        stream = (f"{st['peak'] / KB:.1f} ({st['arena'] / KB:.1f} + {st['trainable'] / KB:.1f}), {st['dominant']}"
                  if st else "- (the first layer is trained)")
        lines.append(f"| {r['model']} | {r['scheme']} | {nr['peak'] / KB:.1f} ({nr['arena'] / KB:.1f} + "
                     f"{nr['trainable'] / KB:.1f}) | {re_['peak'] / KB:.1f} ({re_['arena'] / KB:.1f} + "
                     f"{re_['trainable'] / KB:.1f}) | {re_['backward_live'] / KB:.1f} | {re_['dominant']} | "
                     f"{stream} | {r['inference'] / KB:.1f} | {ref} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    results_md.add_flag(ap)
    args = ap.parse_args()
    rows = ladder()
    text = table(rows)
    print(text)
    if not args.no_write:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
        machine = f"{platform.machine()}, nproc {nproc}"
        section = (f"\n## Memory ladder of the compiled training step ({datetime.date.today()})\n\n"
                   f"Command: `.venv/bin/python benchmarks/memory_ladder.py`; machine: {machine}. Peak = planned "
                   "arena (input image, activations, saved activations, 1-bit masks, gradients, weight-gradient "
                   "buffers) + trained weights/biases kept in RAM; excludes stack, driver buffers, flash. "
                   "Deterministic (no timing). 'backward live' = bytes alive in the arena at the worst step after "
                   "the loss (the training overhead beyond inference), without the trained tensors.\n\n"
                   f"{text}\n")
        results_md.append(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
