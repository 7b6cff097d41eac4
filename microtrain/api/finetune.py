"""``finetune``: train an int8 model on a dataset in the simulator, with the device's arithmetic.

The simulator (``microtrain.sim``) runs the device's integer arithmetic batched in torch and
the optimizer updates the int8 weights / int32 biases themselves with the device's rounding
rule (``runtime/rounding.py``), so the accuracy reached is what the device would reach with
the same scheme, optimizer and data order. ``out`` receives ``model.json``/``model.npz`` (the
trained int8 graph), ``scheme.json``, ``history.json`` and ``checkpoint.pt``, written after
every epoch (and every ``checkpoint_every`` steps); the same call again continues from the
checkpoint to the same final weights as an uninterrupted run (``restart`` discards it).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from microtrain.api.checks import check_count, check_lr, check_seed
from microtrain.api.messages import log
from microtrain.api.models import (
    InputRange,
    ModelSpec,
    SchemeSpec,
    check_export,
    load_model,
    resolve_scheme,
    save_model,
    with_head,
)
from microtrain.data.datasets import check_fits, load_dataset
from microtrain.data.preprocess import preprocess
from microtrain.errors import UserError
from microtrain.ir import Graph, save_graph
from microtrain.runtime.grad_quant import GRAD_DTYPES
from microtrain.sim.resolution import with_resolution
from microtrain.train.checkpoint import CheckpointError, restore, save_checkpoint
from microtrain.train.divergence import TrainingDiverged, advice
from microtrain.train.loop import OPTIMIZERS, TrainConfig, Trainer

CHECKPOINT = "checkpoint.pt"
__all__ = ["OPTIMIZERS", "FinetuneResult", "finetune"]


class _Stop(Exception):
    """Raised by stop_after: leaves the run as an interruption would."""


@dataclasses.dataclass
class FinetuneResult:
    """A fine-tuning run; ``doc`` is the document ``finetune --json`` prints."""

    doc: dict[str, Any]
    graph: Graph | None = None
    """The trained int8 model (None when the run stopped early)."""

    @property
    def history(self) -> list[dict]:
        return list(self.doc.get("epochs", []))

    @property
    def test_accuracy(self) -> float | None:
        return self.doc.get("test_accuracy")


def _prefix_cache(trainer: Trainer, graph: Graph, images, progress, chunk: int = 256) -> dict:
    """Preprocess and run the frozen prefix chunk by chunk (a progress step per chunk)."""
    parts = [trainer.cache(preprocess(images[i:i + chunk], graph), chunk, progress)
             for i in range(0, len(images), chunk)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def finetune(model: ModelSpec, data: str, out: str | Path, *, classes: int | None = None,
             scheme: SchemeSpec = "last-k:2", head: str | None = None, optimizer: str = "sgd-qas",
             epochs: int = 5, lr: float = 0.01, batch_size: int = 16, accumulate: int = 1,
             rounding: str = "stochastic", seed: int = 0, resolution: int | None = None, limit: int | None = None,
             test_limit: int | None = None, checkpoint_every: int = 0, resume: bool = False, restart: bool = False,
             stop_after: int | None = None, threads: int | None = None, input_range: InputRange = None,
             export: str | Path | None = None, grad_dtype: str = "fp32") -> FinetuneResult:
    """Fine-tune ``model`` on ``data`` (see the module doc). ``classes``: a new N-class head (needed
    when the dataset's classes differ); ``head``: int8 (default) or fp32 classifier training;
    ``resolution``: train and evaluate at R x R; ``limit``/``test_limit``: class-balanced subsets;
    ``stop_after``: stop after K optimizer steps as an interruption would (to try resuming);
    ``threads``: torch threads (default: torch's choice); ``input_range``: the real input values of
    pixels 0..1 (stored in the model written); ``export``: also write the trained model there (a
    .tflite for a model imported from one, else a .json + .npz stem); ``grad_dtype``: the layers'
    error tensors in the backward, fp32 (default) or int16 / int8 codes with a power-of-two scale
    per tensor (``runtime/grad_quant.py``)."""
    if threads:
        torch.set_num_threads(threads)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("accumulate", accumulate),
                        ("classes", classes), ("resolution", resolution), ("limit", limit),
                        ("test_limit", test_limit), ("stop_after", stop_after)):
        check_count(value, f"--{name.replace('_', '-')}")
    check_count(checkpoint_every, "--checkpoint-every", 0)
    check_lr(lr)
    check_seed(seed)
    if grad_dtype not in GRAD_DTYPES:
        raise UserError(f"--grad-dtype {grad_dtype!r} is not one of {', '.join(GRAD_DTYPES)}")
    if grad_dtype != "fp32" and OPTIMIZERS.get(optimizer, ("", False, ""))[2] == "fp32":
        raise UserError(f"--grad-dtype {grad_dtype} quantizes the int8 model's backward; the float baseline "
                        f"{optimizer} has none: use an int8 optimizer (e.g. sgd-qas) or --grad-dtype fp32")
    graph = load_model(model, input_range)
    check_export(graph, export)
    try:
        train = load_dataset(data, "train", limit=limit, seed=seed)
        test = load_dataset(data, "test", limit=test_limit, seed=seed)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    if classes is not None and train.num_classes > classes:
        raise UserError(f"dataset {data!r} has {train.num_classes} classes but --classes is {classes}; "
                        f"use --classes {train.num_classes}")
    graph = with_head(graph, classes, seed)
    if resolution is not None:
        try:
            graph = with_resolution(graph, resolution)
        except ValueError as e:  # includes IRError: the model cannot run at that size
            raise UserError(f"--resolution {resolution} does not fit the model: {e}") from None
    try:
        notes = check_fits(train, graph, training=classes is None)
    except ValueError as e:
        raise UserError(str(e)) from None
    plan = resolve_scheme(scheme, graph)
    if head is not None:
        plan = dataclasses.replace(plan, head=head)
    for note in notes:
        log(f"note: {note}")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(optimizer, lr=lr, epochs=epochs, batch_size=batch_size, accumulate=accumulate,
                      rounding=rounding, seed=seed, grad_dtype=grad_dtype)
    trainer = Trainer(graph, plan, cfg)
    signature = {"model": str(model), "data": data, "classes": classes, "scheme": str(scheme), "head": head,
                 "optimizer": optimizer, "epochs": epochs, "lr": lr, "batch_size": batch_size,
                 "accumulate": accumulate, "rounding": rounding, "seed": seed, "resolution": resolution,
                 "limit": limit, "test_limit": test_limit}
    if input_range is not None:
        signature["input_range"] = str(input_range)
    if grad_dtype != "fp32":  # (absent for fp32: checkpoints of earlier versions still match)
        signature["grad_dtype"] = grad_dtype
    ckpt = out / CHECKPOINT
    if ckpt.exists() and not restart:
        try:
            restore(trainer, ckpt, signature)
        except CheckpointError as e:
            raise UserError(str(e)) from None
        log(f"resuming from {ckpt}: epoch {trainer.epoch}, step {trainer.batch_in_epoch}")
    elif resume:
        raise UserError(f"--resume: no checkpoint at {ckpt}")
    plan.save(out / "scheme.json")
    log(f"preprocessing {len(train)} train / {len(test)} test images; caching the frozen prefix "
        f"(before {plan.earliest_layer(graph) or 'nothing'})")
    with tqdm(total=len(train) + len(test), desc="frozen prefix", unit="img", file=sys.stderr, leave=False) as pre:
        train_cache, test_cache = (_prefix_cache(trainer, graph, ds.images, pre.update) for ds in (train, test))
    per_epoch = trainer.steps_per_epoch(len(train))
    bar = tqdm(total=per_epoch * cfg.epochs, initial=trainer.epoch * per_epoch + trainer.batch_in_epoch,
               file=sys.stderr, unit="step", desc="finetune")
    steps_run = [0]

    def on_step(t: Trainer, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(epoch=t.epoch + 1, loss=f"{loss:.3f}")
        steps_run[0] += 1
        if stop_after is not None and steps_run[0] >= stop_after:
            raise _Stop

    def on_epoch(t: Trainer, row: dict) -> None:
        bar.write(f"epoch {row['epoch']:>3}  train loss {row['train_loss']:.4f}  "
                  f"test accuracy {100 * row['test_accuracy']:.2f} %", file=sys.stderr)

    try:
        trainer.fit(train_cache, train.labels, test_cache, test.labels, on_step=on_step, on_epoch=on_epoch,
                    checkpoint=lambda t: save_checkpoint(ckpt, t, signature), checkpoint_every=checkpoint_every)
    except TrainingDiverged as e:
        bar.close()
        kept = (f"the last checkpoint {ckpt} holds the weights from before it" if ckpt.exists()
                else "nothing was written")
        raise UserError(f"{e}; {advice(lr)} and rerun with --restart; {kept}") from None
    except _Stop:
        bar.close()
        log(f"stopped after {steps_run[0]} steps (--stop-after); rerun the same command to resume from {ckpt}")
        return FinetuneResult({"stopped": True, "steps": steps_run[0], "checkpoint": str(ckpt)})
    bar.close()
    if trainer.sim.head_w is not None:  # fp32 head: logits quantized to cover the training set's range
        with torch.no_grad():
            logit_max = max(float(trainer.logits({k: v[i:i + 512] for k, v in train_cache.items()}).abs().max())
                            for i in range(0, len(train), 512))
        final = trainer.sim.to_graph(logit_range=logit_max)
    else:
        final = trainer.final_graph()
    save_graph(final, out / "model")
    exported = str(save_model(final, export)) if export is not None else None
    history = trainer.history
    (out / "history.json").write_text(json.dumps(history, indent=1))
    accuracy = history[-1]["test_accuracy"] if history else float("nan")
    doc = {"model": str(model), "data": data, "scheme": plan.name or str(scheme), "optimizer": optimizer,
           "rounding": rounding, "grad_dtype": grad_dtype, "epochs": history, "test_accuracy": accuracy,
           "train_samples": len(train),
           "test_samples": len(test), "out": str(out), "model_file": str(out / "model.json"),
           "trained_layers": sorted(plan.updated_layers()), "exported": exported}
    return FinetuneResult(doc, final)
