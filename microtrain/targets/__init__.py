"""Targets registry: a target name -> the module that builds and runs a generated project.

Each module has ``build(project_dir, **opts) -> Path`` and ``run(project_dir, workdir, **opts)``
returning a result with ``losses``, ``loss_bits``, ``eval_correct``, ``eval_total`` and
``weights_path`` (CONTRACTS.md). A new target is one module and one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TARGETS: dict[str, str] = {
    "host": "microtrain.targets.host",
    "cortex-m7": "microtrain.targets.cortex_m7",
    "qemu": "microtrain.targets.cortex_m7",
}


def get_target(name: str) -> ModuleType:
    if name not in TARGETS:
        raise KeyError(f"unknown target {name!r}; choose from {', '.join(sorted(TARGETS))}")
    return importlib.import_module(TARGETS[name])
