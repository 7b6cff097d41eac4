"""The Cortex-M7 target (QEMU mps2-an500) under its original import path: the ``cortex-m7``
core of ``mcu/cores.py``, with the functions earlier code calls (``build``, ``run``,
``memory``, ``build_elf``, ``run_elf``, ``project_sources``, ``memory_report``, ``linker``)."""

from __future__ import annotations

from pathlib import Path

from microtrain.targets import mcu
from microtrain.targets.mcu import (
    BuildConfig,
    MemoryReport,
    QemuRun,
    TargetRunResult,
    linker,
    memory_report,
    project_sources,
)

NAME = "cortex-m7"
CORE = mcu.get_core(NAME)
TARGET = mcu.McuTarget(CORE)
build, run, memory = TARGET.build, TARGET.run, TARGET.memory

__all__ = ["NAME", "CORE", "TARGET", "build", "run", "memory", "build_elf", "run_elf", "project_sources",
           "memory_report", "linker", "BuildConfig", "MemoryReport", "QemuRun", "TargetRunResult"]


def build_elf(sources: list[Path], include_dirs: list[Path], out_dir: Path, cfg: BuildConfig | None = None,
              name: str = "firmware") -> Path:
    return mcu.build_elf(CORE, sources, include_dirs, out_dir, cfg, name=name)


def run_elf(elf: Path, workdir: Path | None = None, timeout: float = 300.0) -> QemuRun:
    return mcu.run_elf(CORE, elf, workdir, timeout=timeout)
