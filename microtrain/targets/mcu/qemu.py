"""Run a firmware ELF on the QEMU board of its core, with semihosting.

Semihosting file I/O (fopen/fread/fwrite through newlib's rdimon or picolibc's semihost
layer) is relative to QEMU's working directory, so the firmware reads and writes the host
files of ``workdir``. The exit code comes from the firmware's exit() via semihosting
SYS_EXIT (picolibc's console output arrives on QEMU's stderr and is taken as the output).
QEMU runs with ``-icount shift=ICOUNT_SHIFT``: deterministic virtual time, 2^shift
ns per instruction, which the start-up code turns into an instruction count.

Lines the start-up code adds to the firmware's stdout (``measure.c``; parsed here, also left
in stdout):
  stack_high_water <bytes>      heap_used <bytes>      instructions_total <n>
  cost train_step <i> instructions <n>                  cost infer <i> instructions <n>
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from microtrain.errors import UserError
from microtrain.targets.mcu.cores import ICOUNT_SHIFT, Core
from microtrain.targets.mcu.toolchain import require
from microtrain.targets.process import run_program

FAULT_EXIT = 101  # the start-up code's exit code after a fault


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


def qemu_command(core: Core, elf: Path) -> list[str]:
    extra = ["-bios", "none", "-m", "128M"] if core.family == "riscv" else []
    return [require(core.qemu), "-M", core.board, *extra, "-nographic", "-monitor", "none",
            "-semihosting-config", "enable=on,target=native", "-icount", f"shift={ICOUNT_SHIFT}",
            "-kernel", str(Path(elf).resolve())]


def run_elf(core: Core, elf: Path, workdir: Path | None = None, timeout: float = 300.0,
            on_line: Callable[[str], None] | None = None) -> QemuRun:
    """Run ``elf`` to completion under QEMU in ``workdir``; parse the start-up's report lines.
    ``on_line``: called with each stdout line as it is printed (progress)."""
    workdir = Path(workdir or Path(elf).parent)
    workdir.mkdir(parents=True, exist_ok=True)
    if not Path(elf).exists():
        raise UserError(f"no firmware at {elf}: build it first")
    cmd = qemu_command(core, elf)
    try:
        proc = run_program(cmd, workdir, timeout, on_line, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise UserError(f"the firmware did not finish within {timeout:.0f} s on QEMU {core.board} "
                        f"(hung, or needs a larger --timeout); command: {' '.join(cmd)}") from e
    # newlib's rdimon writes stdout and stderr to QEMU's; picolibc's semihosting layer writes
    # both to the semihosting console, which QEMU sends to its stderr: that is the output.
    out = (proc.stdout if core.family == "arm" else proc.stderr).replace("\r\n", "\n")
    run = QemuRun(returncode=proc.returncode, stdout=out, stderr=proc.stderr)
    for key, rx in _LINE_RES.items():
        m = rx.search(out)
        if m:
            setattr(run, key, int(m.group(1)))
    for kind, _idx, n in _COST_RE.findall(out):
        (run.step_instructions if kind == "train_step" else run.infer_instructions).append(int(n))
    if proc.returncode == FAULT_EXIT and "fault" in proc.stderr:
        raise UserError(f"the firmware crashed on the emulated {core.name} (a fault or unexpected exception); "
                        f"stdout so far:\n{out[-2000:]}")
    return run
