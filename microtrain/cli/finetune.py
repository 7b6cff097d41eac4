"""``microtrain finetune MODEL --data NAME --out DIR``: fine-tune an int8 model in the simulator.

The simulator (``microtrain.sim``) runs the device's integer arithmetic batched in torch
and the optimizer updates the int8 weights / int32 biases themselves with the device's
rounding rule (``runtime/rounding.py``), so the accuracy printed here is what the device
would reach with the same scheme, optimizer and data order.

DIR receives ``model.json``/``model.npz`` (the trained int8 graph, ``ir.save_graph``),
``scheme.json``, ``history.json`` and ``checkpoint.pt``, written after every epoch (and
every ``--checkpoint-every`` steps). Rerunning the same command (or ``--resume``) continues
from the checkpoint to the same final weights as an uninterrupted run; ``--restart``
discards it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from microtrain.cli.common import UserError, emit, log

CHECKPOINT = "checkpoint.pt"


class _Stop(Exception):
    """Raised by --stop-after: leaves the run as an interruption would."""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from microtrain.train.loop import OPTIMIZERS

    p = sub.add_parser(
        "finetune", help="fine-tune an int8 model on a dataset in the simulator (int8 updates, QAS, sparse schemes)",
        description="Fine-tune an int8 model on a dataset with the device's arithmetic: int8 forward, fp32 "
                    "gradients, updates applied to the int8 weights with the device's rounding. Prints train loss "
                    "and test accuracy per epoch, writes the trained int8 model, the scheme and a checkpoint "
                    "(resumable) to --out.")
    p.add_argument("model", metavar="MODEL",
                   help="'default', mcunet-5fps | mbv2-w0.35 | proxyless-w0.3, a zoo .pkl or a microtrain .json")
    p.add_argument("--data", required=True, metavar="NAME",
                   help="fashion-mnist, digits, a folder of class sub-folders or an .npz of images and labels")
    p.add_argument("--classes", type=int, default=None, metavar="N",
                   help="replace the classifier by a new N-class head (needed when the dataset's classes differ)")
    p.add_argument("--scheme", default="last-k:2", metavar="FILE|PRESET",
                   help="update scheme: a scheme JSON or a preset (full, bias-only, classifier-only, last-k:<k>, "
                        "last-blocks:<n>, mcunet-5fps/99kb, ...; default last-k:2)")
    p.add_argument("--head", choices=("int8", "fp32"), default=None,
                   help="train the classifier as int8 (default) or as an fp32 layer on the dequantized features "
                        "(quantized back to int8 when the model is written)")
    p.add_argument("--optimizer", default="sgd-qas", choices=list(OPTIMIZERS),
                   help="int8 optimizer (sgd-qas is the on-device setting), float-shadow* for the paper's "
                        "simulation, fp32-* for the float baseline (default sgd-qas)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.01, help="peak learning rate (cosine schedule, 10%% warm-up)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--accumulate", type=int, default=1, metavar="K", help="micro-batches per optimizer step")
    p.add_argument("--rounding", choices=("nearest", "stochastic"), default="stochastic",
                   help="rounding of the int8 update (default stochastic)")
    p.add_argument("--seed", type=int, default=0, help="data order, subsets, new head and stochastic rounding")
    p.add_argument("--resolution", type=int, default=None, metavar="R",
                   help="train and evaluate at R x R instead of the model's resolution")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="class-balanced subset of N training images")
    p.add_argument("--test-limit", type=int, default=None, metavar="N", help="class-balanced subset of N test images")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="K",
                   help="also checkpoint every K optimizer steps within an epoch (default: per epoch only)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.pt (also automatic when it exists and matches)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in DIR")
    p.add_argument("--stop-after", type=int, default=None, metavar="K",
                   help="stop after K optimizer steps of this invocation, as an interruption would (to try --resume)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.set_defaults(func=run)
    return p


def _prepare(args: argparse.Namespace):
    from microtrain.data.datasets import check_fits, load_dataset
    from microtrain.ir import IRError, ModelFileError
    from microtrain.models import ModelNotFound, load_model
    from microtrain.scheme import SchemeError
    from microtrain.sim.resolution import with_resolution
    from microtrain.sparse.presets import load_scheme

    try:
        graph = load_model(args.model)
    except (ModelNotFound, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    except (ModelFileError, IRError) as e:
        raise UserError(f"cannot load model {args.model!r}: {e}") from None
    try:
        train = load_dataset(args.data, "train", limit=args.limit, seed=args.seed)
        test = load_dataset(args.data, "test", limit=args.test_limit, seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from None
    if args.classes is not None:
        from microtrain.frontend.heads import new_head

        if train.num_classes > args.classes:
            raise UserError(f"dataset {args.data!r} has {train.num_classes} classes but --classes is {args.classes}; "
                            f"use --classes {train.num_classes}")
        graph = new_head(graph, args.classes, seed=args.seed)
    if args.resolution is not None:
        try:
            graph = with_resolution(graph, args.resolution)
        except ValueError as e:  # includes IRError: the model cannot run at that size
            raise UserError(f"--resolution {args.resolution} does not fit the model: {e}") from None
    try:
        notes = check_fits(train, graph, new_head=False)
    except ValueError as e:
        raise UserError(f"{e} (--classes {train.num_classes})" if "classes" in str(e) else str(e)) from None
    try:
        scheme = load_scheme(args.scheme, graph)
    except SchemeError as e:
        raise UserError(f"--scheme {args.scheme}: {e}") from None
    if args.head is not None:
        import dataclasses

        scheme = dataclasses.replace(scheme, head=args.head)
    return graph, scheme, train, test, notes


def _signature(args: argparse.Namespace) -> dict:
    keys = ("model", "data", "classes", "scheme", "head", "optimizer", "epochs", "lr", "batch_size", "accumulate",
            "rounding", "seed", "resolution", "limit", "test_limit")
    return {k: getattr(args, k) for k in keys}


def _save_checkpoint(path: Path, trainer, signature: dict) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save({"signature": json.dumps(signature, sort_keys=True), "trainer": trainer.state_dict()}, tmp)
    os.replace(tmp, path)  # atomic: an interruption never leaves a half-written checkpoint


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from microtrain.data.preprocess import preprocess
    from microtrain.ir import save_graph
    from microtrain.train.loop import TrainConfig, Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("epochs", "batch_size", "accumulate"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if not args.lr > 0:
        raise UserError("--lr must be > 0")
    graph, scheme, train, test, notes = _prepare(args)
    for note in notes:
        log(f"note: {note}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(args.optimizer, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                      accumulate=args.accumulate, rounding=args.rounding, seed=args.seed)
    trainer = Trainer(graph, scheme, cfg)
    signature = _signature(args)
    ckpt = out / CHECKPOINT
    if ckpt.exists() and not args.restart:
        saved = torch.load(ckpt, weights_only=True)
        if saved["signature"] != json.dumps(signature, sort_keys=True):
            raise UserError(f"{ckpt} belongs to another run ({saved['signature']}); rerun with the same arguments, "
                            "another --out, or --restart")
        trainer.load_state_dict(saved["trainer"])
        log(f"resuming from {ckpt}: epoch {trainer.epoch}, step {trainer.batch_in_epoch}")
    elif args.resume:
        raise UserError(f"--resume: no checkpoint at {ckpt}")
    scheme.save(out / "scheme.json")
    log(f"preprocessing {len(train)} train / {len(test)} test images; caching the frozen prefix "
        f"(before {scheme.earliest_layer(graph) or 'nothing'})")
    train_cache = trainer.cache(preprocess(train.images, graph))
    test_cache = trainer.cache(preprocess(test.images, graph))
    per_epoch = trainer.steps_per_epoch(len(train))
    bar = tqdm(total=per_epoch * cfg.epochs, initial=trainer.epoch * per_epoch + trainer.batch_in_epoch,
               file=sys.stderr, unit="step", desc="finetune")

    steps_run = [0]

    def on_step(t, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(epoch=t.epoch + 1, loss=f"{loss:.3f}")
        steps_run[0] += 1
        if args.stop_after is not None and steps_run[0] >= args.stop_after:
            raise _Stop

    def on_epoch(t, row: dict) -> None:
        bar.write(f"epoch {row['epoch']:>3}  train loss {row['train_loss']:.4f}  "
                  f"test accuracy {100 * row['test_accuracy']:.2f} %", file=sys.stderr)

    try:
        trainer.fit(train_cache, train.labels, test_cache, test.labels, on_step=on_step, on_epoch=on_epoch,
                    checkpoint=lambda t: _save_checkpoint(ckpt, t, signature), checkpoint_every=args.checkpoint_every)
    except _Stop:
        bar.close()
        log(f"stopped after {steps_run[0]} steps (--stop-after); rerun the same command to resume from {ckpt}")
        emit(args, {"stopped": True, "steps": steps_run[0], "checkpoint": str(ckpt)}, lambda: None)
        return 0
    bar.close()
    if trainer.sim.head_w is not None:  # fp32 head: logits quantized to cover the training set's range
        with torch.no_grad():
            logit_max = max(float(trainer.logits({k: v[i:i + 512] for k, v in train_cache.items()}).abs().max())
                            for i in range(0, len(train), 512))
        final = trainer.sim.to_graph(logit_range=logit_max)
    else:
        final = trainer.final_graph()
    save_graph(final, out / "model")
    history = trainer.history
    (out / "history.json").write_text(json.dumps(history, indent=1))
    accuracy = history[-1]["test_accuracy"] if history else float("nan")
    doc = {"model": str(args.model), "data": args.data, "scheme": scheme.name or args.scheme,
           "optimizer": args.optimizer, "rounding": args.rounding, "epochs": history, "test_accuracy": accuracy,
           "train_samples": len(train), "test_samples": len(test), "out": str(out),
           "model_file": str(out / "model.json"), "trained_layers": sorted(scheme.updated_layers())}

    def human() -> None:
        print(f"{'epoch':>5}  {'train loss':>10}  {'test acc':>8}")
        for row in history:
            print(f"{row['epoch']:>5}  {row['train_loss']:>10.4f}  {100 * row['test_accuracy']:>7.2f}%")
        print(f"trained int8 model: {out / 'model.json'} (scheme {out / 'scheme.json'})")

    emit(args, doc, human)
    return 0 if np.isfinite(accuracy) else 1
