"""``microtrain compile MODEL --scheme S --out DIR``: the training step as a C project.

Runs the compiler pipeline (training graph, autodiff, pruning, slicing, masks, reordering,
memory plan) and writes the generated project (CONTRACTS.md layout) with ``report.json``.
``--json`` prints the report (peak bytes and breakdown included) as the one JSON document.
"""

from __future__ import annotations

import argparse

import microtrain
from microtrain.cli.common import (
    MODEL_HELP,
    add_input_range,
    emit,
    fraction,
    nonnegative_int,
    positive_float,
    positive_int,
    seed_int,
    size_arg,
)
from microtrain.codegen.context import PACKS
from microtrain.compiler.pipeline import DEVICE_LR
from microtrain.report.memory import format_memory
from microtrain.runtime.grad_quant import GRAD_DTYPES
from microtrain.runtime.rounding import ROUNDINGS


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "compile",
        help="compile the training step of a model + update scheme to a C project",
        description="Derive the training step (forward, loss, backward, in-place SGD+QAS updates) of MODEL for "
                    "an update scheme at compile time, plan its memory in one static arena and write a C99 "
                    "project (include/, src/, runtime/, main/mt_main.c, report.json) to --out.",
    )
    p.add_argument("model", metavar="MODEL",
                   help=MODEL_HELP)
    p.add_argument("--scheme", required=True, metavar="FILE|PRESET",
                   help="a scheme JSON file or a preset (full, bias-only, classifier-only, last-k:<k>, "
                        "last-blocks:<n>, <model>/<budget> for the published schemes)")
    p.add_argument("--classes", type=positive_int, default=None, metavar="N",
                   help="give the model a new N-class head first (transfer to a new task)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory of the generated project")
    p.add_argument("--reorder", action=argparse.BooleanOptionalAction, default=True,
                   help="apply each update as soon as its gradient exists (default on)")
    p.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True,
                   help="with --reorder: compute, apply and free one output channel's gradient at a time")
    p.add_argument("--rounding", choices=ROUNDINGS, default="stochastic",
                   help="rounding of the int8/int32 update (default stochastic, as finetune and plan)")
    p.add_argument("--grad-dtype", choices=list(GRAD_DTYPES), default="fp32",
                   help="the layers' error tensors in the backward: fp32 (default), or int16 / int8 codes with one "
                        "power-of-two scale per tensor (docs/concepts.md, 'Integer errors')")
    recipe = p.add_argument_group("training recipe (the simulator's, computed by the generated step)")
    recipe.add_argument("--accumulate", type=int, default=1, metavar="K",
                        help="update every K samples with the mean of their gradients (default 1); the "
                             "accumulation buffers (fp32, one per trained element) are in the memory plan")
    recipe.add_argument("--momentum", type=float, default=0.0, metavar="MU",
                        help="SGD momentum (default 0: none; else an fp32 buffer per trained element)")
    recipe.add_argument("--lr", type=positive_float, default=DEVICE_LR,
                        help=f"base learning rate compiled in (default {DEVICE_LR:g}, measured not to diverge on the "
                             "zoo models and the default CNN; `run --lr` sets it per run)")
    recipe.add_argument("--schedule", choices=("cosine", "constant"), default="cosine",
                        help="learning-rate schedule: linear warm-up then cosine decay (default), or constant")
    recipe.add_argument("--warmup", type=fraction, default=0.1, metavar="FRACTION",
                        help="fraction of the schedule's updates spent warming up (default 0.1)")
    recipe.add_argument("--steps", type=nonnegative_int, default=0, metavar="N",
                        help="samples the compiled schedule spans (default 0: set at run time; without it the "
                             "schedule is warm-up, then constant)")
    recipe.add_argument("--loss", choices=("cross_entropy", "mse"), default="cross_entropy",
                        help="cross_entropy: a classifier against the label (default); mse: an autoencoder "
                             "against its own input (the mean squared reconstruction error, the anomaly score)")
    p.add_argument("--no-qas", action="store_true", help="disable quantization-aware scaling of the update")
    p.add_argument("--seed", type=seed_int, default=0, help="default stochastic-rounding seed and head seed")
    p.add_argument("--budget", type=size_arg("budget"), default=None, metavar="BYTES",
                   help="fail unless the peak memory fits, e.g. 256KB, 262144 (KB = 1024 bytes)")
    p.add_argument("--stream-input", action="store_true",
                   help="the first fused block pulls the input image row by row (a sensor, camera lines by DMA or "
                        "a file) instead of holding it whole in the arena; needs a frozen first stage")
    p.add_argument("--plot", action="store_true", help="also draw the memory timeline to DIR/memory.png")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log one line per compiler pass with its effect on the peak (stderr)")
    p.add_argument("--target", default=None, metavar="NAME",
                   help="also build the project for a microcontroller core and report its memory from the linked "
                        "ELF (cortex-m3, cortex-m4, cortex-m7, cortex-m33, cortex-m55, riscv32, riscv32f; or qemu "
                        "with --core), cross-compiled at the --sram/--flash budgets; or lib: also write a library "
                        "folder for the user's firmware (microtrain.h, CMakeLists.txt, toolchain files, example; "
                        "docs/integration.md)")
    p.add_argument("--core", default=None, metavar="NAME",
                   help="with --target qemu: the core (default cortex-m7); with --target lib: also link for it")
    p.add_argument("--sram", type=size_arg("SRAM budget"), default=None, metavar="SIZE",
                   help="with --target: SRAM budget (256KB)")
    p.add_argument("--flash", type=size_arg("flash budget"), default=None, metavar="SIZE",
                   help="with --target: flash budget (1MB)")
    p.add_argument("--packs", choices=("auto", *PACKS), default="auto",
                   help="compile-time set-up packs of the frozen convs, flash traded for int8 forward speed: full "
                        "(store words and pre-extended 1x1 rows), words (the words only), off (none: every kernel "
                        "derives its set-up per call); auto: full, or with --target the next smaller one when the "
                        "link overflows --flash (docs/targets.md)")
    add_input_range(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    result = microtrain.compile(args.model, args.scheme, args.out, classes=args.classes, seed=args.seed,
                                reorder=args.reorder, per_channel=args.per_channel, rounding=args.rounding,
                                qas=not args.no_qas, stream_input=args.stream_input, budget=args.budget,
                                accumulate=args.accumulate, momentum=args.momentum, lr=args.lr,
                                schedule=args.schedule, warmup=args.warmup, steps=args.steps,
                                plot=args.plot, target=args.target, core=args.core, sram=args.sram, flash=args.flash,
                                verbose=args.verbose, input_range=args.input_range, loss=args.loss,
                                grad_dtype=args.grad_dtype, packs=args.packs)
    doc, out = result.report, result.out

    def human() -> None:
        bd = doc["breakdown"]
        print(f"wrote {out}")
        state = (f" + optimizer state {doc['optimizer_state_bytes'] / 1024:.1f} KB"
                 if doc["optimizer_state_bytes"] else "")
        print(f"peak memory {doc['peak_bytes']} B ({doc['peak_bytes'] / 1024:.1f} KB) = arena "
              f"{doc['arena_bytes'] / 1024:.1f} KB + trained tensors in RAM {doc['trainable_bytes'] / 1024:.1f} KB"
              f"{state}")
        sched = doc["lr_schedule"]
        print(f"recipe: update every {args.accumulate} sample(s), momentum {args.momentum:g}, {args.rounding} "
              f"rounding; learning rate {sched['kind']} from {sched['lr']:g}"
              + (f" over {sched['total_updates']} updates ({sched['warmup_updates']} warm-up)"
                 if sched["total_updates"] else " (length set at run time)"))
        print("at the peak: " + ", ".join(f"{k} {v / 1024:.1f} KB" for k, v in bd.items() if v))
        print(f"inference alone: arena {result.inference.arena_bytes / 1024:.1f} KB")
        if args.plot:
            print(f"memory timeline: {doc['plot']}")
        if result.target_memory is not None:
            print(f"{doc['target']['name']} firmware {doc['target']['elf']} (static memory; stack measured by `run`):")
            print(format_memory(result.target_memory))

    emit(args, doc, human)
    return 0
