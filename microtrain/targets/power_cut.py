"""Fault injection: power cuts during checkpoint writes, then a boot that must restore exactly
the last committed checkpoint.

``power_cut_campaign`` runs a compiled project's driver (QEMU Cortex-M7, or the host build)
with checkpoints every ``every`` samples on a file-backed flash that enforces NOR semantics
(``codegen/flash_template.py``):

1. A reference run on an erased flash: every committed checkpoint's state (``dump_state``), the
   flash operation count at each commit, and the final trained state.
2. For each cut point, spread evenly over all the flash operations (page erases and write-unit
   programs) of the reference run: the same run on an erased flash with power lost during that
   operation (its page left scrambled, the program stopped at once), then a boot on that flash
   that restores the newest valid checkpoint and writes what it restored.
3. The check: the restored state equals, byte for byte, the state of the last checkpoint whose
   save completed before the cut (or nothing is restored when none had), never a mixture; and at
   every ``continue_every``-th cut point the boot also trains on to the end and must reach the
   reference's final state exactly (training continues as if never interrupted).

Deterministic: the cut is an operation count, the scrambling a pure function of it.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np

from microtrain.codegen.driver_files import parse_checkpoints, write_driver_files
from microtrain.codegen.flash_template import POWER_CUT_EXIT


@dataclasses.dataclass
class CampaignResult:
    cuts: int
    flash_ops: int            # erase + program operations of the reference run
    saves: list[dict]         # the reference run's checkpoints
    restored_previous: int    # cuts after which the last committed checkpoint came back
    restored_none: int        # cuts before any commit (nothing restored, training from the model)
    torn: int                 # cuts after which a checkpoint that was not committed came back, or a mixture
    mismatches: list[str]     # what differed (empty when the campaign passes)
    continued: int            # cut points that also trained on to the end
    continued_equal: int      # ... and reached the reference's final state exactly
    slots_rejected: int       # boots that reported a slot ignored (a torn write detected)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.torn == 0 and self.continued_equal == self.continued

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "ok": self.ok}


def _runner(project: Path, target: str) -> Callable[[Path], tuple[int, str]]:
    """A function running the project's driver in a work directory: (exit code, stdout)."""
    if target == "host":
        from microtrain.targets import host

        exe = host.build(project)
        return lambda work: (lambda p: (p.returncode, p.stdout))(
            subprocess.run([str(exe.resolve())], cwd=work, capture_output=True, text=True, timeout=600))
    from microtrain.targets.cortex_m7 import build, run_elf

    elf = build(project)
    return lambda work: (lambda r: (r.returncode, r.stdout))(run_elf(elf, work))


def cut_points(total_ops: int, count: int) -> list[int]:
    """``count`` distinct operation numbers spread evenly over 1..total_ops (all of them if fewer)."""
    return sorted({int(v) for v in np.linspace(1, total_ops, min(count, total_ops)).round()})


def power_cut_campaign(project: str | Path, workdir: str | Path, x: np.ndarray, y: np.ndarray, steps: int,
                       every: int, cuts: int, *, lr: float = 0.01, target: str = "qemu", page_size: int = 2048,
                       write_unit: int = 8, continue_every: int = 10,
                       log: Callable[[str], None] | None = None) -> CampaignResult:
    project, workdir = Path(project), Path(workdir)
    run = _runner(project, target)
    geometry = {"flash_page_size": page_size, "flash_write_unit": write_unit}

    def fresh(name: str, run_steps: int, **extra: int) -> Path:
        work = workdir / name
        if work.exists():
            shutil.rmtree(work)
        write_driver_files(work, x, y, run_steps, lr, extra={**geometry, **extra})
        return work

    ref = fresh("reference", steps, checkpoint_every=every, restore=1, dump_state=1)
    code, out = run(ref)
    if code != 0:
        raise RuntimeError(f"the reference run failed (exit {code}):\n{out[-2000:]}")
    saves = parse_checkpoints(out)["saves"]
    if not saves:
        raise RuntimeError(f"the reference run saved no checkpoint (steps {steps}, every {every})")
    final = (ref / "mt_weights.bin").read_bytes()
    initial = (ref / "mt_state_restored.bin").read_bytes()  # the model's own state (nothing to restore)
    states = {s["seq"]: (ref / f"mt_state_{s['seq']}.bin").read_bytes() for s in saves}
    total = saves[-1]["flash_ops"]
    res = CampaignResult(0, total, saves, 0, 0, 0, [], 0, 0, 0)
    for n, k in enumerate(cut_points(total, cuts)):
        work = fresh("cut", steps, checkpoint_every=every, restore=1, power_cut_at=k)
        code, out = run(work)
        if code != POWER_CUT_EXIT or parse_checkpoints(out)["power_cut"] != k:
            res.mismatches.append(f"cut {k}: the run did not stop at flash operation {k} (exit {code})")
            continue
        committed = [s for s in saves if s["flash_ops"] < k]
        go_on = continue_every > 0 and n % continue_every == 0
        boot = workdir / "boot"
        if boot.exists():
            shutil.rmtree(boot)
        shutil.copytree(work, boot)
        write_driver_files(boot, x, y, steps if go_on else 0, lr,
                           extra={**geometry, "checkpoint_every": every if go_on else 0, "restore": 1,
                                  "dump_state": 1})
        code, out = run(boot)
        events = parse_checkpoints(out)
        res.cuts += 1
        res.slots_rejected += bool(events["ignored"])
        if code != 0:
            res.mismatches.append(f"cut {k}: the boot failed (exit {code}): {out[-300:]}")
            continue
        got = (boot / "mt_state_restored.bin").read_bytes()
        if not committed:
            if events["restored"] is not None or got != initial:
                res.torn += 1
                res.mismatches.append(f"cut {k}: restored {events['restored']} before any commit")
            else:
                res.restored_none += 1
        else:
            want = committed[-1]["seq"]
            if events["restored"] is None or events["restored"]["seq"] != want or got != states[want]:
                res.torn += 1
                res.mismatches.append(f"cut {k}: restored {events['restored']} instead of checkpoint {want} "
                                      f"(state {'equal' if got == states[want] else 'differs'})")
            else:
                res.restored_previous += 1
        if go_on:
            res.continued += 1
            res.continued_equal += (boot / "mt_weights.bin").read_bytes() == final
        if log is not None and (n % 20 == 0):
            log(f"cut {n + 1}: flash operation {k} of {total}")
    return res
