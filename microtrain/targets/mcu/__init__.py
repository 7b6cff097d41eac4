"""Microcontroller targets: build a generated microtrain project for a core of ``cores.py`` at
the memory budgets and run it on the core's QEMU board with semihosting.

``McuTarget(core)`` has the target interface of ``microtrain.targets`` (``build``, ``run``,
``memory``); ``microtrain.targets.get_target`` makes one per core name (``cortex-m4``, ...,
``riscv32``) and for ``qemu`` with ``--core``. The pieces, shared by all cores:
``cores.py`` (the family description table), ``linker.py`` (budgets -> linker script),
``toolchain.py`` (cross-compile and link, overflow errors), ``elfmem.py`` (memory from the
ELF), ``qemu.py`` (run, parse the start-up's report), ``doubles.py`` (no double precision on
the step's path), and the start-up code (``startup_arm.c``, ``startup_riscv.c``,
``measure.c``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from microtrain.errors import UserError
from microtrain.targets.mcu import linker, toolchain
from microtrain.targets.mcu.cores import CORES, Core, get_core
from microtrain.targets.mcu.elfmem import MemoryReport, memory_report
from microtrain.targets.mcu.qemu import QemuRun, run_elf
from microtrain.targets.mcu.toolchain import BuildConfig, build_elf

BUDGET_KEYS = ("flash", "sram", "min_heap", "min_stack")

__all__ = ["CORES", "Core", "get_core", "McuTarget", "TargetRunResult", "project_sources", "build_elf", "run_elf",
           "memory_report", "BuildConfig", "MemoryReport", "QemuRun", "linker", "toolchain"]


def project_sources(project_dir: Path) -> tuple[list[Path], list[Path]]:
    """C sources and include dirs of a generated project (layout of the compiler contract)."""
    project_dir = Path(project_dir)
    if not (project_dir / "main" / "mt_main.c").exists():
        raise UserError(f"{project_dir} is not a generated microtrain project (no main/mt_main.c); "
                        "create one with `microtrain compile ... --out DIR`")
    sources = sorted(p for sub in ("src", "runtime", "main") for p in (project_dir / sub).rglob("*.c"))
    includes = sorted({p.parent for sub in ("include", "src", "runtime", "main")
                       for p in (project_dir / sub).rglob("*.h")})
    return sources, includes


def config(opts: dict) -> BuildConfig:
    """The build configuration of target options (budgets as sizes like '256KB'; defines: macro names)."""
    return BuildConfig(flash=linker.parse_size(opts.get("flash") or linker.DEFAULT_FLASH),
                       sram=linker.parse_size(opts.get("sram") or linker.DEFAULT_SRAM),
                       min_heap=linker.parse_size(opts.get("min_heap") or linker.DEFAULT_MIN_HEAP),
                       min_stack=linker.parse_size(opts.get("min_stack") or linker.DEFAULT_MIN_STACK),
                       wrap_model=True,
                       defines=dict(d.split("=", 1) if "=" in d else (d, "1") for d in opts.get("defines") or ()))


def _trainable_names(project_dir: Path) -> set[str]:
    """C symbol names of the trainable tensors, if the project's report.json lists them."""
    path = Path(project_dir) / "report.json"
    if not path.exists():
        return set()
    doc = json.loads(path.read_text())
    names = set()
    for t in doc.get("trainable", []) or []:
        if isinstance(t, dict):
            for key in ("symbol", "c_name"):
                if t.get(key):
                    names.add(str(t[key]))
    return names


@dataclass
class TargetRunResult:
    """What a run of the generated driver on the emulator produced."""
    returncode: int
    stdout: str
    core: str = "cortex-m7"
    board: str = ""
    losses: list[float] = field(default_factory=list)
    loss_bits: list[int] = field(default_factory=list)
    eval_correct: int | None = None
    eval_total: int | None = None
    weights_path: Path | None = None
    memory: dict = field(default_factory=dict)
    step_instructions: list[int] = field(default_factory=list)
    infer_instructions: list[int] = field(default_factory=list)
    elf: Path | None = None

    def to_dict(self) -> dict:
        steps = sorted(self.step_instructions)
        infers = sorted(self.infer_instructions)
        return {"target": "qemu", "core": self.core, "board": self.board, "returncode": self.returncode,
                "losses": self.losses, "loss_bits": [f"{b:08x}" for b in self.loss_bits],
                "eval_correct": self.eval_correct, "eval_total": self.eval_total,
                "weights": str(self.weights_path) if self.weights_path else None,
                "memory": self.memory, "elf": str(self.elf) if self.elf else None,
                "cost": {"measure": f"instructions executed on QEMU {self.board} ({self.core}, -icount), per call",
                         "train_step_instructions_median": steps[len(steps) // 2] if steps else None,
                         "infer_instructions_median": infers[len(infers) // 2] if infers else None,
                         "train_step_instructions": self.step_instructions}}


_STEP_RE = re.compile(r"^step (\d+) loss (\S+) bits ([0-9a-fA-F]{8})$", re.M)
_EVAL_RE = re.compile(r"^eval correct (\d+) total (\d+)$", re.M)


class McuTarget:
    """One core as a target: build the project's firmware, run it on QEMU, report memory."""

    def __init__(self, core: Core | str):
        self.core = get_core(core) if isinstance(core, str) else core
        self.name = self.core.name

    def __repr__(self) -> str:
        return f"McuTarget({self.core.name!r})"

    def build_dir(self, project_dir: Path) -> Path:
        return Path(project_dir) / "build" / self.core.name

    def build(self, project_dir: Path, **opts) -> Path:
        """Build the project's firmware ELF at the budgets (opts: flash, sram, min_heap, min_stack;
        defines: macro names like the host target's, e.g. ("MT_DEBUG_LOGITS",)).

        Reuses the ELF of a previous build when no source changed and the budgets are the same."""
        project_dir = Path(project_dir)
        sources, includes = project_sources(project_dir)
        cfg = config(opts)
        linker.check_budgets(self.core, cfg.flash, cfg.sram)  # before any compiling
        toolchain.require(self.core.compiler)
        cfg.step_sources = tuple(p for p in sources if p.parent.name != "main")
        out = self.build_dir(project_dir)
        elf, stamp = out / "mt_firmware.elf", out / "mt_firmware.stamp"
        key = json.dumps({"cfg": repr(cfg), "core": repr(self.core),
                          "startup": [p.stat().st_mtime_ns for p in toolchain.STARTUP_FILES]})
        newest = max(p.stat().st_mtime_ns for p in [*sources, *(h for d in includes for h in d.glob("*.h"))])
        if elf.exists() and stamp.exists() and stamp.read_text() == key and elf.stat().st_mtime_ns > newest:
            return elf
        elf = build_elf(self.core, sources, includes, out, cfg, name="mt_firmware")
        stamp.write_text(key)
        return elf

    def memory(self, project_dir: Path, elf: Path, run: QemuRun | None = None, **opts) -> dict:
        """Memory report of a built firmware (and of its run, if given); opts: the budgets."""
        rep = memory_report(elf, trainable_names=_trainable_names(project_dir))
        if run is not None:
            rep.stack_high_water, rep.heap_used = run.stack_high_water, run.heap_used
        cfg = config(opts)
        return {**rep.to_dict(), "core": self.core.name, "sram_budget_bytes": cfg.sram,
                "flash_budget_bytes": cfg.flash}

    def run(self, project_dir: Path, workdir: Path, **opts) -> TargetRunResult:
        """Build (unless opts['elf'] is given) and run the driver in ``workdir`` on QEMU.

        ``workdir`` holds mt_config.txt and the mt_*.bin data files; the trained weights come
        back as ``workdir/mt_weights.bin``. opts: flash, sram, min_heap, min_stack, defines, timeout.
        """
        elf = Path(opts["elf"]) if opts.get("elf") else self.build(project_dir, **opts)
        qr = run_elf(self.core, elf, workdir, timeout=float(opts.get("timeout") or 600.0),
                     on_line=opts.get("on_line"))
        if qr.returncode != 0:
            raise UserError(f"the firmware exited with code {qr.returncode} on the emulated {self.core.name}:\n"
                            f"{(qr.stdout + qr.stderr)[-2000:]}")
        res = TargetRunResult(returncode=qr.returncode, stdout=qr.stdout, core=self.core.name, board=self.core.board,
                              elf=elf, step_instructions=qr.step_instructions,
                              infer_instructions=qr.infer_instructions)
        for _i, loss, bits in _STEP_RE.findall(qr.stdout):
            res.losses.append(float(loss))
            res.loss_bits.append(int(bits, 16))
        m = _EVAL_RE.search(qr.stdout)
        if m:
            res.eval_correct, res.eval_total = int(m.group(1)), int(m.group(2))
        weights = Path(workdir) / "mt_weights.bin"
        res.weights_path = weights if weights.exists() else None
        res.memory = self.memory(project_dir, elf, qr, **{k: v for k, v in opts.items() if k in BUDGET_KEYS})
        return res
