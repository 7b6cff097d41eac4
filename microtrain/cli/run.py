"""``microtrain run DIR --target host --data NAME --steps N``: train a compiled project.

Builds the project for the target, writes the driver's input files (samples of the
dataset preprocessed for the model, a seeded shuffle of the train split; a seeded subset
of the test split for ``--eval``), runs it, prints the loss of every step, and exports the
trained model (the compiled model with the trained tensors read back from
``mt_weights.bin``) as a microtrain .json/.npz.
"""

from __future__ import annotations

import argparse

import microtrain
from microtrain.cli.common import emit, fraction, nonnegative_int, positive_float, positive_int, seed_int, size_arg
from microtrain.report.memory import format_memory


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run",
        help="build and run a compiled training project (host or emulated target) on a dataset",
        description="Build the project written by `microtrain compile` for a target, stream --steps training "
                    "samples of --data through it at batch 1, print the loss per step, evaluate on --eval test "
                    "samples and export the trained model.",
    )
    p.add_argument("project", metavar="DIR", help="a project written by `microtrain compile --out DIR`")
    p.add_argument("--target", default="host", metavar="NAME",
                   help="host (gcc); qemu (the emulated board of --core); or a core name, the same as qemu --core "
                        "NAME: cortex-m3, cortex-m4, cortex-m7, cortex-m33, cortex-m55, riscv32, riscv32f")
    p.add_argument("--core", default=None, metavar="NAME",
                   help="with --target qemu: the emulated core (default cortex-m7; see docs/targets.md)")
    p.add_argument("--data", required=True, metavar="NAME",
                   help="fashion-mnist, digits, a folder of class sub-folders or an .npz of images and labels")
    p.add_argument("--steps", type=nonnegative_int, required=True, metavar="N", help="training steps (one sample each)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="base learning rate (default: the one the project was compiled with)")
    p.add_argument("--schedule", choices=("cosine", "constant"), default=None,
                   help="learning-rate schedule over the run's updates (default: the project's, cosine with "
                        "warm-up unless compiled otherwise); the device computes each update's rate")
    p.add_argument("--warmup", type=fraction, default=None, metavar="FRACTION",
                   help="fraction of the updates spent warming up (default: the project's, 0.1)")
    p.add_argument("--eval", type=nonnegative_int, default=0, metavar="N",
                   help="test samples to evaluate after training")
    p.add_argument("--seed", type=seed_int, default=0, help="sample order and stochastic-rounding seed (default 0)")
    p.add_argument("--workdir", default=None, metavar="DIR", help="where the data files go (default DIR/run)")
    p.add_argument("--export", default=None, metavar="PATH",
                   help="where the trained model goes: a .tflite (for a model imported from one: the same file "
                        "with the trained tensors) or a path stem for .json + .npz (default DIR/trained_model)")
    p.add_argument("--checkpoint-every", type=nonnegative_int, default=0, metavar="N",
                   help="save the trained state to flash every N samples (the driver's file-backed flash "
                        "WORKDIR/mt_flash.bin: two slots, sequence numbers, CRC); the run first restores the newest "
                        "valid checkpoint there and continues from it (default 0: no checkpoints)")
    p.add_argument("--prequential", action="store_true",
                   help="predict each training sample before learning from it and report the running accuracy "
                        "(prequential evaluation of a device learning from a stream; no extra forward pass)")
    p.add_argument("--flash-page-size", type=positive_int, default=2048, metavar="B",
                   help="erase page of the flash (2048)")
    p.add_argument("--flash-write-unit", type=positive_int, default=8, metavar="B",
                   help="program unit of the flash (8)")
    p.add_argument("--sram", type=size_arg("SRAM budget"), default=None, metavar="SIZE",
                   help="emulated targets: SRAM budget the firmware is linked at (default 256KB)")
    p.add_argument("--flash", type=size_arg("flash budget"), default=None, metavar="SIZE",
                   help="emulated targets: flash budget the firmware is linked at (default 1MB)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    result = microtrain.run(args.project, args.data, args.steps, target=args.target, core=args.core, lr=args.lr,
                            schedule=args.schedule, warmup=args.warmup, checkpoint_every=args.checkpoint_every,
                            flash_page_size=args.flash_page_size, flash_write_unit=args.flash_write_unit,
                            prequential=args.prequential,
                            eval_samples=args.eval, seed=args.seed, workdir=args.workdir, export=args.export,
                            sram=args.sram, flash=args.flash)
    doc = result.doc

    def human() -> None:
        ck = doc.get("checkpoints")
        if ck:
            for slot, why in ck["ignored"]:
                print(f"checkpoint slot {slot} ignored: {why}")
            if ck["restored"]:
                r = ck["restored"]
                print(f"restored checkpoint {r['seq']}: continuing after sample {r['samples']}")
            elif ck["none"]:
                print("no checkpoint in flash: training starts from the model's weights")
        first = ck["restored"]["samples"] if ck and ck["restored"] else 0
        for i, loss in enumerate(doc["losses"]):
            print(f"step {first + i} loss {loss:.6f}")
        if ck and ck["saves"]:
            s = ck["saves"][-1]
            print(f"{len(ck['saves'])} checkpoints saved, the last: sequence {s['seq']} after sample {s['samples']}, "
                  f"{s['bytes']} bytes programmed, {s['pages']} pages erased")
        pq = doc.get("prequential")
        if pq and pq["running"]:
            marks = sorted({max(0, round(len(pq["running"]) * f / 10) - 1) for f in range(1, 11)})
            print("prequential accuracy (each sample predicted before it is learnt), running: " + ", ".join(
                f"{pq['steps'][m] + 1}: {100 * pq['running'][m]:.1f} %" for m in marks))
        if doc["eval_total"]:
            print(f"eval {doc['eval_correct']}/{doc['eval_total']} = "
                  f"{100 * doc['eval_correct'] / doc['eval_total']:.1f} %")
        print(f"trained model: {doc['exported']}")
        if result.memory is not None:
            print(format_memory(result.memory))
            if doc["cost"]["train_step_instructions_median"]:
                print(f"cost: {doc['cost']['train_step_instructions_median']:,} instructions per training step "
                      "(median, QEMU instruction count)")

    emit(args, doc, human)
    return 0
