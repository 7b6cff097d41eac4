"""``compile``: the training step of a model + scheme as a C project (what ``microtrain compile`` runs)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from microtrain.api.checks import check_lr
from microtrain.api.messages import log
from microtrain.api.models import InputRange, ModelSpec, SchemeSpec, prepare
from microtrain.codegen.context import PACKS
from microtrain.codegen.generate_project import generate_project, report
from microtrain.compiler.build_training_graph import CompileError
from microtrain.compiler.pipeline import (
    DEVICE_LR,
    CompiledStep,
    CompileOptions,
    compile_inference,
    compile_training,
)
from microtrain.compiler.plan_memory import MemoryPlan
from microtrain.errors import UserError
from microtrain.targets import get_target
from microtrain.targets.mcu.cores import get_core
from microtrain.targets.mcu.toolchain import LinkOverflow
from microtrain.units import parse_size


@dataclasses.dataclass
class CompileResult:
    """What ``compile`` wrote and measured; ``report`` is the document ``compile --json`` prints."""

    out: Path
    report: dict[str, Any]
    step: CompiledStep
    inference: MemoryPlan

    @property
    def peak_bytes(self) -> int:
        """Arena + trained tensors in RAM at the planned peak (bytes)."""
        return int(self.report["peak_bytes"])

    @property
    def target_memory(self) -> dict[str, Any] | None:
        """With a cross target: the memory of the linked firmware (``report.memory.format_memory``)."""
        return self.report["target"]["memory"] if "target" in self.report else None


def compile(model: ModelSpec, scheme: SchemeSpec, out: str | Path, *, classes: int | None = None, seed: int = 0,
            reorder: bool = True, per_channel: bool = True, rounding: str = "stochastic", qas: bool = True,
            stream_input: bool = False, budget: str | int | None = None, plot: bool = False,
            target: str | None = None, core: str | None = None, sram: str | int | None = None,
            flash: str | int | None = None, verbose: bool = False, accumulate: int = 1, momentum: float = 0.0,
            lr: float = DEVICE_LR, schedule: str = "cosine", warmup: float = 0.1, steps: int = 0,
            input_range: InputRange = None, loss: str = "cross_entropy", grad_dtype: str = "fp32",
            packs: str = "auto") -> CompileResult:
    """Derive the training step of ``model`` (with a new ``classes``-way head if given) for ``scheme``,
    plan its memory, write the C project to ``out`` and, for a cross ``target`` (a core name such as
    ``cortex-m4``, or ``qemu`` with ``core``; docs/targets.md), link it at the ``sram``/``flash``
    budgets and report its memory from the ELF; ``target="lib"``: also write the library folder
    (public header, CMake, toolchain files, example; docs/integration.md), linked for ``core`` if
    given. ``budget``: fail
    unless the planned peak fits. The training recipe the generated step follows: an update every
    ``accumulate`` samples, ``momentum``, ``rounding``, and the learning-rate ``schedule`` (cosine
    or constant) from ``lr`` with ``warmup`` (a fraction) over ``steps`` samples (0: set at run
    time). ``loss``: "cross_entropy" (a classifier) or "mse" (an autoencoder learning to reconstruct
    its input; the anomaly score is the reconstruction error). ``grad_dtype``: the layers' error tensors
    in the backward, fp32 (default) or int16 / int8 codes with a power-of-two scale per tensor
    (``runtime/grad_quant.py``). ``packs``: the compile-time set-up packs of the frozen convs, flash
    for int8 forward speed (``full``, ``words``, ``off``; docs/targets.md); ``auto``: ``full``, and for
    a cross ``target`` whose link overflows ``flash`` the next smaller that fits. ``verbose``: log one line per
    compiler pass to stderr (logger ``microtrain.compiler``) with its effect on the peak (the
    planner then runs after every pass)."""
    check_lr(lr)
    if packs != "auto" and packs not in PACKS:
        raise UserError(f"--packs {packs}: choose auto, {', '.join(PACKS)}")
    if target == "lib" and core is not None:
        get_core(core)  # an unknown core: a clear error before any work
    prepared = prepare(model, classes, scheme, seed, input_range)
    graph = prepared.graph
    options = CompileOptions(reorder=reorder, per_channel=per_channel, rounding=rounding, seed=seed, qas=qas,
                             stream_input=stream_input, measure_passes=verbose, accumulate=accumulate,
                             momentum=momentum, lr=lr, lr_schedule=schedule, warmup=warmup, steps=steps, loss=loss,
                             grad_dtype=grad_dtype,
                             budget=parse_size(budget, "budget") if budget is not None else None)
    try:
        with _pass_log(verbose):
            step = compile_training(graph, prepared.scheme, options)
    except CompileError as e:
        raise UserError(str(e)) from None
    inference = compile_inference(graph)
    levels = list(PACKS) if packs == "auto" else [packs]
    out = _generate(step, graph, out, inference, levels[0])
    doc = report(step, inference)
    doc["out"] = str(out)
    doc["packs"] = levels[0]
    if plot:
        from microtrain.compiler.plot_memory import plot_memory  # deferred: matplotlib

        doc["plot"] = str(plot_memory(step.plan, out / "memory.png", title=f"{model} / {scheme}"))
    if target == "lib":  # the library folder (docs/integration.md), checked on --core if given
        from microtrain.targets.lib import write_library

        doc["library"] = write_library(out, flash=parse_size(flash, "flash") if flash else None,
                                       sram=parse_size(sram, "sram") if sram else None)
        target, core = (core, None) if core else (None, None)
    if target and target != "host":  # a cross target: link at the budgets, memory from the ELF
        module = get_target(target, core)
        budgets = {k: v for k, v in (("sram", sram), ("flash", flash)) if v}
        log(f"building for {module.name}")
        for i, level in enumerate(levels):
            if i:
                _generate(step, graph, out, inference, level)
                doc["packs"] = level
            try:
                elf = module.build(out, **budgets)
                break
            except LinkOverflow as e:
                if "FLASH" not in e.regions or i + 1 == len(levels):
                    raise
                log(f"with --packs {level} the program is {e.regions['FLASH']} bytes over the flash budget: "
                    f"trying --packs {levels[i + 1]} (less flash, a slower int8 forward; docs/targets.md)")
        doc["target"] = {"name": module.name, "board": module.core.board, "elf": str(elf),
                         "memory": module.memory(out, elf, **budgets)}
    return CompileResult(out, doc, step, inference)


def _generate(step: CompiledStep, graph, out: str | Path, inference: MemoryPlan, packs: str) -> Path:
    try:
        return generate_project(step, graph, Path(out), inference, packs=packs)
    except ValueError as e:  # e.g. --out names an existing file; nothing was written
        raise UserError(str(e)) from None


@contextlib.contextmanager
def _pass_log(on: bool) -> Iterator[None]:
    """While compiling: the compiler's pass lines (only those, not every library's debug output) on stderr."""
    if not on:
        yield
        return
    logger = logging.getLogger("microtrain.compiler")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
