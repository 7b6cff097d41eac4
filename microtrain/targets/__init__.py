"""Targets registry: a target name -> the object that builds and runs a generated project.

  host                 the host's gcc (``host.py``)
  cortex-m3 ... riscv32f   a microcontroller core (``mcu/cores.py``): cross-compiled at the memory
                       budgets and, for ``run``, executed on the core's QEMU board
  qemu                 the emulated board of ``core`` (default cortex-m7): the same as naming the core

Each target has ``build(project_dir, **opts) -> Path`` and ``run(project_dir, workdir, **opts)``
returning a result with ``losses``, ``loss_bits``, ``eval_correct``, ``eval_total`` and
``weights_path`` (CONTRACTS.md); the microcontroller targets also ``memory(project_dir, elf)``.
A new core is one entry of ``mcu/cores.py``.
"""

from __future__ import annotations

import importlib

from microtrain.errors import UserError
from microtrain.targets.mcu.cores import CORES

DEFAULT_CORE = "cortex-m7"
MODULES = {"host": "microtrain.targets.host"}


def target_names() -> list[str]:
    return [*MODULES, "qemu", *CORES]


def get_target(name: str, core: str | None = None):
    """The target called ``name`` (``core`` picks the emulated core of ``qemu``); a UserError
    naming the choices for an unknown name or a core that contradicts the target."""
    from microtrain.targets.mcu import McuTarget, get_core

    if name in MODULES:
        if core is not None:
            raise UserError(f"--core {core} does not apply to --target {name}; use --target qemu --core {core}")
        return importlib.import_module(MODULES[name])
    if name == "qemu":
        return McuTarget(get_core(core or DEFAULT_CORE))
    if name in CORES:
        if core is not None and core != name:
            raise UserError(f"--target {name} and --core {core} disagree; give one of them")
        return McuTarget(CORES[name])
    raise UserError(f"unknown target {name!r}: choose one of {', '.join(target_names())}")
