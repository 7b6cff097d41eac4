"""``run``: train a compiled project on a target (host gcc, or an emulated microcontroller core on QEMU)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from microtrain.api.checks import check_count, check_lr, check_seed
from microtrain.api.messages import log
from microtrain.api.models import check_export, save_model
from microtrain.codegen.driver_files import parse_checkpoints, parse_prequential, read_weights, write_driver_files
from microtrain.data.datasets import check_fits, load_dataset
from microtrain.data.preprocess import preprocess
from microtrain.errors import UserError
from microtrain.ir import Graph, load_graph
from microtrain.targets import get_target
from microtrain.train.divergence import TrainingDiverged, advice, check_device_run


@dataclasses.dataclass
class RunResult:
    """A run of a compiled project; ``doc`` is the document ``run --json`` prints."""

    doc: dict[str, Any]

    @property
    def losses(self) -> list[float]:
        return list(self.doc["losses"])

    @property
    def accuracy(self) -> float | None:
        return self.doc["accuracy"]

    @property
    def memory(self) -> dict[str, Any] | None:
        """Emulated target: SRAM (static + heap + measured stack) and flash of the firmware, from the ELF."""
        return self.doc.get("memory")

    @property
    def cost(self) -> dict[str, Any] | None:
        """Emulated target: instructions per training step (QEMU instruction count)."""
        return self.doc.get("cost")


def samples(data: str, split: str, count: int, graph: Graph, seed: int,
            notes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``count`` samples of a seeded shuffle of ``split``, preprocessed for ``graph`` (int8), and labels.
    The conversions that takes (resizing, gray/RGB) are stated (``notes``); training data must
    have the head's classes."""
    try:
        ds = load_dataset(data, split=split)
        found = check_fits(ds, graph, training=split == "train")
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"--data {data}: {e}") from None
    for note in found if notes else ():
        log(f"note: {note}")
    order = np.random.default_rng(seed).permutation(len(ds))[:count]
    return preprocess(ds.images[order], graph), ds.labels[order].astype(np.int32)


def run_schedule(report: dict, steps: int, lr: float | None, kind: str | None, warmup: float | None) -> dict:
    """The learning-rate schedule of a run of ``steps`` samples: the project's compiled recipe
    (report.json) with the run's overrides, spanning the run's updates (steps // accumulate)."""
    from microtrain.compiler.pipeline import DEVICE_LR, schedule_updates
    from microtrain.runtime.schedule import KINDS

    base = report.get("lr_schedule", {})
    opts = report.get("options", {})
    fraction = warmup if warmup is not None else base.get("warmup_fraction", 0.1)
    if not 0 <= fraction < 1:
        raise UserError(f"--warmup {fraction}: give the fraction of the updates spent warming up, in [0, 1)")
    rate = check_lr(lr if lr is not None else base.get("lr", DEVICE_LR))
    kind = kind or base.get("kind", "cosine")
    if kind not in KINDS:
        raise UserError(f"--schedule {kind}: choose {' or '.join(KINDS)}")
    k = int(opts.get("accumulate", 1))
    w, total = schedule_updates(steps, k, fraction)
    return {"kind": kind, "lr": rate, "warmup_updates": w, "total_updates": total, "warmup_fraction": fraction,
            "accumulate": k}


def run(project: str | Path, data: str, steps: int, *, target: str = "host", core: str | None = None,
        lr: float | None = None,
        schedule: str | None = None, warmup: float | None = None, eval_samples: int = 0,
        seed: int = 0, workdir: str | Path | None = None, export: str | Path | None = None,
        sram: str | int | None = None, flash: str | int | None = None, checkpoint_every: int = 0,
        flash_page_size: int = 2048, flash_write_unit: int = 8, prequential: bool = False) -> RunResult:
    """Build the project ``compile`` wrote for ``target`` (``host``, a core name such as ``riscv32``,
    or ``qemu`` with ``core``; docs/targets.md), stream ``steps`` training samples of
    ``data`` through it at batch 1, evaluate on ``eval_samples`` test samples, and export the trained
    model (``export``, default ``project/trained_model``: .json + .npz; a path ending in .tflite: the
    .tflite the model was imported from, with the trained tensors). The device computes the
    learning rate of each update: ``schedule`` (cosine | constant) from ``lr`` with ``warmup`` (a
    fraction) over the run's updates; each defaults to the project's compiled recipe.

    ``checkpoint_every`` N > 0: the trained state is saved to flash every N samples (the driver's
    file-backed flash ``workdir/mt_flash.bin``, pages of ``flash_page_size`` bytes programmed in
    units of ``flash_write_unit``), and the run first restores the newest valid checkpoint found
    there and continues from its sample count, so a second run with the same ``workdir`` picks up
    where the first stopped (a foreign or corrupt checkpoint is ignored with a message).

    ``prequential``: each training sample is also predicted before the model learns from it (the
    argmax of the training step's own forward pass), giving the running accuracy of a device that
    learns from a stream (``doc["prequential"]``)."""
    project = Path(project)
    if not (project / "report.json").exists() or not (project / "model.json").exists():
        raise UserError(f"{project} is not a compiled project (no report.json/model.json); "
                        "run `microtrain compile MODEL --scheme ... --out DIR` first")
    check_count(steps, "--steps", 0)
    check_count(eval_samples, "--eval", 0)
    check_count(checkpoint_every, "--checkpoint-every", 0)
    if lr is not None:
        check_lr(lr)
    check_seed(seed)
    from microtrain.runtime.flash_image import slot_pages

    if checkpoint_every and not slot_pages(flash_page_size, flash_write_unit, 1):
        raise UserError(f"flash page size {flash_page_size} / write unit {flash_write_unit}: the write unit must be a "
                        "power of two from 1 to 256 that divides the page size")
    module = get_target(target, core)
    core = getattr(getattr(module, "core", None), "name", None)
    graph = load_graph(project / "model")
    check_export(graph, export)
    rep = json.loads((project / "report.json").read_text())
    log(f"preparing {steps} training samples of {data} for {graph.meta.get('name', 'the model')}")
    x_train, y_train = samples(data, "train", max(1, steps), graph, seed)
    x_test = y_test = None
    if eval_samples:
        x_test, y_test = samples(data, "test", eval_samples, graph, seed + 1, notes=False)
    work = Path(workdir) if workdir else project / "run"
    sched = run_schedule(rep, steps, lr, schedule, warmup)
    lr = sched["lr"]
    ckpt = ({"checkpoint_every": checkpoint_every, "restore": 1, "flash_page_size": flash_page_size,
             "flash_write_unit": flash_write_unit} if checkpoint_every else {})
    if prequential:
        ckpt["prequential"] = 1
    write_driver_files(work, x_train, y_train, steps, lr, seed, x_test, y_test, eval_samples,
                       schedule=(sched["kind"], sched["warmup_updates"], sched["total_updates"]), extra=ckpt)
    log(f"building and running on {core or target} in {work}")
    bar = tqdm(total=steps, desc=f"training on {core or target}", unit="step", file=sys.stderr, leave=False)

    def on_line(line: str) -> None:  # the driver prints one "step <i> loss ..." line per step
        if line.startswith("step "):
            bar.update(1)

    try:
        budgets = {k: v for k, v in (("sram", sram), ("flash", flash)) if v}
        res = module.run(project, work, on_line=on_line, **budgets)
    except (RuntimeError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    finally:
        bar.close()
    try:  # the watch's rules are a classifier's (an autoencoder's mse has no chance level ln C)
        if rep.get("options", {}).get("loss", "cross_entropy") == "cross_entropy":
            check_device_run(res.stdout, int(graph.tensors[graph.outputs[0]].shape[-1]), y_train)
    except TrainingDiverged as e:
        raise UserError(f"{e}; {advice(lr)}. Nothing was exported: the project's model and any earlier export "
                        "are unchanged") from None
    if res.weights_path is None:
        raise UserError(f"the run wrote no mt_weights.bin in {work}:\n{res.stdout[-1000:]}")
    trained = read_weights(project, res.weights_path)
    tensors = dict(graph.tensors)
    for name, arr in trained.items():
        tensors[name] = tensors[name].with_data(arr)
    meta = {**graph.meta, "trained": {"steps": steps, "lr": lr, "data": data,
                                      "target": core or target, "scheme": rep.get("scheme", {}).get("name", "")}}
    export = Path(export) if export else project / "trained_model"
    written = save_model(graph.replace(tensors=tensors, meta=meta), export)
    doc = {"project": str(project), "target": target, "core": core, "steps": steps, "lr": lr, "lr_schedule": sched,
           "losses": res.losses, "loss_bits": [f"{b:08x}" for b in res.loss_bits],
           "eval_correct": res.eval_correct, "eval_total": res.eval_total,
           "accuracy": (res.eval_correct / res.eval_total) if res.eval_total else None,
           "exported": str(written)}
    if checkpoint_every:
        doc["checkpoints"] = parse_checkpoints(res.stdout)
    if prequential:
        doc["prequential"] = parse_prequential(res.stdout)
    if getattr(res, "memory", None):  # emulated target: memory from the ELF + measured stack, cost per step
        doc["memory"] = res.memory
        doc["cost"] = res.to_dict()["cost"]
    return RunResult(doc)
