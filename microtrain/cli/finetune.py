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
from pathlib import Path

import numpy as np

import microtrain
from microtrain.api.finetune import OPTIMIZERS
from microtrain.cli.common import (
    MODEL_HELP,
    add_input_range,
    emit,
    nonnegative_int,
    positive_float,
    positive_int,
    seed_int,
)
from microtrain.runtime.grad_quant import GRAD_DTYPES
from microtrain.runtime.rounding import ROUNDINGS


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "finetune", help="fine-tune an int8 model on a dataset in the simulator (int8 updates, QAS, sparse schemes)",
        description="Fine-tune an int8 model on a dataset with the device's arithmetic: int8 forward, fp32 "
                    "gradients (or int16 / int8 errors, --grad-dtype), updates applied to the int8 weights with "
                    "the device's rounding. Prints train loss "
                    "and test accuracy per epoch, writes the trained int8 model, the scheme and a checkpoint "
                    "(resumable) to --out.")
    p.add_argument("model", metavar="MODEL",
                   help=MODEL_HELP)
    p.add_argument("--data", required=True, metavar="NAME",
                   help="fashion-mnist, digits, a folder of class sub-folders or an .npz of images and labels")
    p.add_argument("--classes", type=positive_int, default=None, metavar="N",
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
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--lr", type=positive_float, default=0.01, help="peak learning rate (cosine schedule, 10%% warm-up)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--accumulate", type=positive_int, default=1, metavar="K", help="micro-batches per optimizer step")
    p.add_argument("--rounding", choices=ROUNDINGS, default="stochastic",
                   help="rounding of the int8 update (default stochastic)")
    p.add_argument("--grad-dtype", choices=list(GRAD_DTYPES), default="fp32",
                   help="the layers' error tensors in the backward: fp32 (default), or int16 / int8 codes with one "
                        "power-of-two scale per tensor (docs/concepts.md, 'Integer errors')")
    p.add_argument("--seed", type=seed_int, default=0, help="data order, subsets, new head and stochastic rounding")
    p.add_argument("--resolution", type=positive_int, default=None, metavar="R",
                   help="train and evaluate at R x R instead of the model's resolution")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="class-balanced subset of N training images")
    p.add_argument("--test-limit", type=positive_int, default=None, metavar="N",
                   help="class-balanced subset of N test images")
    p.add_argument("--checkpoint-every", type=nonnegative_int, default=0, metavar="K",
                   help="also checkpoint every K optimizer steps within an epoch (default: per epoch only)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--export", default=None, metavar="PATH",
                   help="also write the trained model here: a .tflite (for a model imported from one: the same "
                        "file with the trained tensors and new head) or a path stem for .json + .npz")
    p.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.pt (also automatic when it exists and matches)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint in DIR")
    p.add_argument("--stop-after", type=positive_int, default=None, metavar="K",
                   help="stop after K optimizer steps of this invocation, as an interruption would (to try --resume)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)")
    add_input_range(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    result = microtrain.finetune(
        args.model, args.data, args.out, classes=args.classes, scheme=args.scheme, head=args.head,
        optimizer=args.optimizer, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        accumulate=args.accumulate, rounding=args.rounding, seed=args.seed, resolution=args.resolution,
        limit=args.limit, test_limit=args.test_limit, checkpoint_every=args.checkpoint_every, resume=args.resume,
        restart=args.restart, stop_after=args.stop_after, threads=args.threads, input_range=args.input_range,
        export=args.export, grad_dtype=args.grad_dtype)
    doc = result.doc
    if doc.get("stopped"):
        emit(args, doc, lambda: None)
        return 0
    out = Path(doc["out"])

    def human() -> None:
        print(f"{'epoch':>5}  {'train loss':>10}  {'test acc':>8}")
        for row in result.history:
            print(f"{row['epoch']:>5}  {row['train_loss']:>10.4f}  {100 * row['test_accuracy']:>7.2f}%")
        print(f"trained int8 model: {out / 'model.json'} (scheme {out / 'scheme.json'})")
        if doc.get("exported"):
            print(f"exported: {doc['exported']}")

    emit(args, doc, human)
    return 0 if np.isfinite(doc["test_accuracy"]) else 1
