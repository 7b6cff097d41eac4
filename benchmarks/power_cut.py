"""Learning that survives power loss: a fault-injection campaign on the emulated Cortex-M7, and
the flash cost of checkpoints.

The default CNN with a new 10-class head, the tests' scheme (last 3 biases, last 2 weights), the
recipe accumulation 2 + momentum 0.9 (so the checkpoint holds optimizer state too), trained on
digits at batch 1 on QEMU mps2-an500 with a checkpoint every ``--every`` samples through the
driver's file-backed flash (NOR semantics enforced: erase to 0xFF, program only clears bits,
aligned write units inside one page). ``targets/power_cut.py`` cuts power at ``--cuts``
operations spread over all the checkpoint writes of the run, boots again after each and checks
that the restored state is exactly the last committed checkpoint (and, at every 10th cut, that
training continues to the uninterrupted run's final weights). Also: bytes programmed and pages
erased per checkpoint at several flash geometries, and how long a 10k-cycle flash lasts at
several checkpoint intervals. Appends a section to docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_md

ENDURANCE = 10_000  # erase cycles of a typical MCU flash page


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cuts", type=int, default=220)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--target", default="qemu", choices=("qemu", "host"))
    results_md.add_flag(ap)
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()

    from microtrain.api.run import samples
    from microtrain.codegen.generate_project import generate_project, state_layout
    from microtrain.compiler.pipeline import CompileOptions, compile_training
    from microtrain.frontend.heads import new_head
    from microtrain.models import load_model
    from microtrain.runtime import flash_image
    from microtrain.scheme import make_scheme
    from microtrain.targets.power_cut import power_cut_campaign

    graph = new_head(load_model("default"), 10)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[-3:], {n: 1.0 for n in names[-2:]})
    step = compile_training(graph, scheme, CompileOptions(accumulate=2, momentum=0.9, lr=0.02))
    work = Path(tempfile.mkdtemp(prefix="mt_power_cut_"))
    project = generate_project(step, graph, work / "project")
    x, y = samples("digits", "train", args.steps, graph, 0)
    layout = state_layout(step)
    state = sum(b for _, b in layout)
    t0 = time.time()
    res = power_cut_campaign(project, work, x, y, args.steps, args.every, args.cuts, lr=0.02, target=args.target,
                             page_size=2048, write_unit=8, continue_every=10,
                             log=lambda m: print(m, file=sys.stderr, flush=True))
    seconds = time.time() - t0
    rows = [f"| cut points | {res.cuts} (spread over all {res.flash_ops} flash operations of "
            f"{len(res.saves)} checkpoints) |",
            f"| restored exactly the last committed checkpoint | {res.restored_previous} |",
            f"| cut before the first commit: nothing restored, training from the model's weights | "
            f"{res.restored_none} |",
            f"| torn or mixed checkpoints restored | {res.torn} |",
            f"| boots that detected and ignored a torn slot | {res.slots_rejected} |",
            f"| cut points that trained on to the end: same final weights as the uninterrupted run | "
            f"{res.continued_equal} of {res.continued} |",
            f"| mismatches | {len(res.mismatches)} |"]
    geo = []
    for page, unit in ((2048, 8), (4096, 256), (256, 4), (128 * 1024, 32)):
        pages = flash_image.slot_pages(page, unit, state)
        written = flash_image.header_area(unit) + -(-state // unit) * unit
        geo.append(f"| {page} B / {unit} B | {pages} | {written:,} | {2 * pages} ({2 * pages * page / 1024:.0f} KB) |")
    life = []
    pages = flash_image.slot_pages(2048, 8, state)
    for label, minutes in (("1 min", 1), ("10 min", 10), ("1 h", 60), ("1 day", 1440)):
        checkpoints = 2 * ENDURANCE  # each page is erased once per two checkpoints (two slots)
        days = checkpoints * minutes / 1440
        life.append(f"| {label} | {checkpoints:,} | {days:,.0f} days ({days / 365.25:.1f} years) |")
    spans = ", ".join(f"{n} {b} B" for n, b in layout)
    table = "\n".join(["| fault injection | |", "|---|---|", *rows, "",
                       "| flash page / write unit | pages per checkpoint (one slot) | bytes programmed per checkpoint "
                       "| region (two slots) |", "|---|---:|---:|---:|", *geo, "",
                       "| checkpoint interval | checkpoints until a 10k-cycle page wears out | lifetime |",
                       "|---|---:|---:|", *life])
    print(table)
    if res.mismatches:
        print("\n".join(res.mismatches[:20]), file=sys.stderr)
    if not args.no_write:
        cmd = results_md.command("benchmarks/power_cut.py", argv)
        qemu = subprocess.run(["qemu-system-arm", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
        section = f"""

## Checkpoints that survive power loss: fault injection on the emulated Cortex-M7 (benchmarks/power_cut.py)

Command: `{cmd.strip()}` (code at {commit}); date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC,
{seconds:.0f} s; machine: {results_md.machine()}; {qemu}.
Setup: default CNN + new 10-class head, last 3 biases and last 2 weights trained, accumulation 2, momentum 0.9,
{args.steps} digits samples at batch 1 on `{args.target}`, a checkpoint every {args.every} samples through the
driver's file-backed flash (2048-byte pages, 8-byte write units: NOR semantics enforced). A checkpoint holds
{state:,} bytes of state ({spans}) behind a 32-byte header (sequence number, model id, CRC-32s), in two slots;
the header is written last. Each cut point is a flash operation number (page erase or write-unit program): power
is lost during it (its page left with a pseudo-random subset of bits set or cleared) and the program stops; a
second boot on that flash restores the newest valid checkpoint.

{table}

Endurance: with two slots every page of the region is erased once per two checkpoints, so a 10k-cycle flash
takes 20,000 checkpoints; a checkpoint every hour lasts {2 * ENDURANCE / 24 / 365.25:.1f} years, every 10 minutes
{2 * ENDURANCE * 10 / 1440:.0f} days (more slots, or a larger region used as a ring, would multiply this).
"""
        results_md.append(section)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
