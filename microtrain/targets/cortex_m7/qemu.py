"""Run a firmware ELF on QEMU mps2-an500 (Cortex-M7) with semihosting.

Semihosting file I/O (fopen/fread/fwrite through newlib rdimon) is relative to QEMU's
working directory, so the firmware reads and writes the host files of ``workdir``. The exit
code comes from the firmware's exit() via semihosting SYS_EXIT. QEMU runs with
``-icount shift=ICOUNT_SHIFT``: deterministic virtual time, 2^shift ns per instruction,
which the start-up code turns into an instruction count (see startup.c).

Lines the start-up code adds to the firmware's stdout (parsed here, also left in stdout):
  stack_high_water <bytes>      heap_used <bytes>      instructions_total <n>
  cost train_step <i> instructions <n>                  cost infer <i> instructions <n>
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from microtrain.errors import UserError
from microtrain.targets.cortex_m7.toolchain import require

ICOUNT_SHIFT = 6  # must match MT_ICOUNT_SHIFT in startup.c
FAULT_EXIT = 101  # Default_Handler's exit code


@dataclass
class QemuRun:
    returncode: int
    stdout: str
    stderr: str
    stack_high_water: int | None = None
    heap_used: int | None = None
    instructions_total: int | None = None
    step_instructions: list[int] = field(default_factory=list)
    infer_instructions: list[int] = field(default_factory=list)


_LINE_RES = {
    "stack_high_water": re.compile(r"^stack_high_water (\d+)$", re.M),
    "heap_used": re.compile(r"^heap_used (\d+)$", re.M),
    "instructions_total": re.compile(r"^instructions_total (\d+)$", re.M),
}
_COST_RE = re.compile(r"^cost (train_step|infer) (\d+) instructions (\d+)$", re.M)


def qemu_command(elf: Path) -> list[str]:
    return [require("qemu-system-arm"), "-M", "mps2-an500", "-nographic", "-monitor", "none",
            "-semihosting-config", "enable=on,target=native", "-icount", f"shift={ICOUNT_SHIFT}",
            "-kernel", str(Path(elf).resolve())]


def run_elf(elf: Path, workdir: Path | None = None, timeout: float = 300.0) -> QemuRun:
    """Run ``elf`` to completion under QEMU in ``workdir``; parse the start-up's report lines."""
    workdir = Path(workdir or Path(elf).parent)
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = qemu_command(elf)
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise UserError(f"the firmware did not finish within {timeout:.0f} s on QEMU "
                        f"(hung, or needs a larger --timeout); command: {' '.join(cmd)}") from e
    out = proc.stdout.replace("\r\n", "\n")
    run = QemuRun(returncode=proc.returncode, stdout=out, stderr=proc.stderr)
    for key, rx in _LINE_RES.items():
        m = rx.search(out)
        if m:
            setattr(run, key, int(m.group(1)))
    for kind, _idx, n in _COST_RE.findall(out):
        (run.step_instructions if kind == "train_step" else run.infer_instructions).append(int(n))
    if proc.returncode == FAULT_EXIT and "hard fault" in proc.stderr:
        raise UserError("the firmware crashed on the emulated Cortex-M7 (hard fault or unexpected exception); "
                        f"stdout so far:\n{out[-2000:]}")
    return run
