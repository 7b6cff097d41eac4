"""The on-device half of ``make demo``: transfer the default CNN to a task it never saw,
training on an emulated Cortex-M7 within the SRAM and flash of a real microcontroller.

Each step runs one real ``microtrain`` verb (printed, so a user can run it again), reads
its ``--json`` document and prints what matters:

  plan     contribution analysis on the new task + search for the best scheme in a budget
  compile  the training step to C for the Cortex-M7, linked at 256 KB SRAM / 1 MB flash
  run      on QEMU mps2-an500: accuracy before training (0 steps), then N training steps
           at batch 1 on the device (each sample predicted before it is learnt: the
           prequential accuracy), then accuracy after, memory from the ELF, cost per step

Then the paper's comparison (``demo_cloud``): "cloud training + edge deployment", fp32
fine-tuning of the whole model on the same samples in the same order with the same schedule,
quantized to int8, evaluated on the same held-out digits; and a plot of both runs' loss and
prequential accuracy over the steps. Every number is deterministic (seeded; the device's
arithmetic is bit-exact), so two runs print the same.

The task: scikit-learn's handwritten digits (8x8, upscaled to the model's 28x28) with a new
10-class head, for a CNN that was trained on Fashion-MNIST clothing.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from microtrain.report.memory import format_memory
from microtrain.report.tables import Column, fmt_kb, render

TASK = "digits"
BUDGET = "48KB"
TRAIN_DIGITS = 1437  # the digits training split
PASSES = 2
STEPS = PASSES * TRAIN_DIGITS  # two passes over the training digits, batch 1
EVAL = 360  # the whole digits test split
LR = 0.02


def microtrain(args: list[str]) -> dict:
    """Run one CLI verb with --json; show the command; progress stays on stderr."""
    cmd = [sys.executable, "-m", "microtrain.cli", *args, "--json"]
    shown = "microtrain " + " ".join(shlex.quote(a) for a in args)
    print(f"$ {shown}", flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"`{shown}` failed with exit code {proc.returncode}")
    return json.loads(proc.stdout)


def kb(n: int | float) -> str:
    return f"{n / 1024:.1f} KB"


PLAN_ARGS = ["--limit", "400", "--val-limit", "200", "--epochs", "1", "--candidates", "6", "--evaluations", "60"]
"""Contribution analysis on 400 training digits, 1 epoch per run, the last 6 convs as candidates."""


def step_plan(work: Path, budget: str, plan_args: list[str] = PLAN_ARGS) -> dict:
    print(f"\n== 6. choose what to train on the device: the best sparse scheme within {budget} ==", flush=True)
    doc = microtrain(["plan", "default", "--data", TASK, "--classes", "10", "--budget", budget, *plan_args,
                      "--out", str(work / "scheme.json"), "--analysis", str(work / "analysis")])
    rows = [[r["layer"], "yes" if r["bias"] else "", f"{r['ratio']:g}" if r["ratio"] else "",
             f"{r['channels']}/{r['out_channels']}" if r["channels"] else "", r["ram_bytes"]] for r in doc["layers"]]
    print(render([Column("layer"), Column("bias"), Column("weights", ">"), Column("channels", ">"),
                  Column("RAM KB", ">", fmt_kb)], rows, totals=["trained tensors", "", "", "", doc["trainable_bytes"]]))
    print(f"planned peak {kb(doc['peak_bytes'])} = arena {kb(doc['arena_bytes'])} + trained tensors "
          f"{kb(doc['trainable_bytes'])} (budget {budget}); predicted accuracy {100 * doc['predicted_accuracy']:.1f} % "
          f"vs classifier-only {100 * doc['classifier_accuracy']:.1f} % (simulator, short runs)")
    evo, rnd = doc["search"]["evolutionary"], doc["search"]["random"]
    print(f"evolutionary search {100 * evo['proxy']:.1f} % vs random search {100 * rnd['proxy']:.1f} % "
          f"at {evo['evaluations']} compiled schemes each")
    return doc


def step_compile(work: Path) -> dict:
    print("\n== 7. compile the training step to C and link it for the Cortex-M7 at 256 KB SRAM / 1 MB flash ==",
          flush=True)
    doc = microtrain(["compile", "default", "--classes", "10", "--scheme", str(work / "scheme.json"),
                      "--target", "cortex-m7", "--sram", "256KB", "--flash", "1MB", "--out", str(work / "project")])
    print(f"compiled step: peak {kb(doc['peak_bytes'])} = arena {kb(doc['arena_bytes'])} + trained tensors "
          f"{kb(doc['trainable_bytes'])}; firmware {doc['target']['elf']}")
    print(format_memory(doc["target"]["memory"]))
    return doc


def step_run(work: Path, steps: int, lr: float, eval_count: int) -> dict:
    return microtrain(["run", str(work / "project"), "--target", "qemu", "--data", TASK, "--steps", str(steps),
                       "--lr", str(lr), "--eval", str(eval_count), "--workdir", str(work / f"run{steps}"),
                       *(["--prequential"] if steps else [])])


def step_cloud(work: Path, steps: int, lr: float, eval_count: int, after: dict) -> tuple[dict, Path]:
    from microtrain import demo_cloud

    print("\n== 10. the paper's baseline, cloud training + edge deployment: fp32 fine-tuning of the whole model "
          "on the same samples, order and schedule, then int8 ==", flush=True)
    cloud = demo_cloud.cloud_training(work / "project", TASK, steps, lr, eval_count)
    print(f"held-out accuracy of the int8 model deployed from the cloud: {100 * cloud['accuracy']:.1f} % "
          f"({cloud['eval_total']} digits); prequential accuracy over the run {100 * cloud['prequential'][-1]:.1f} %")
    device = {"losses": after["losses"], "correct": after["prequential"]["correct"]}
    plot = demo_cloud.plot_training(work / "training.png", device, cloud,
                                    f"{TASK}: on the device vs cloud training, {steps} steps at batch 1")
    print(f"plot of loss and prequential accuracy over the steps: {plot}")
    return cloud, plot


def main(work: Path, budget: str = BUDGET, steps: int = STEPS, lr: float = LR, eval_count: int = EVAL,
         plan_args: list[str] = PLAN_ARGS) -> dict:
    """Steps 6-10 of the demo; returns the numbers of the summary."""

    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    plan = step_plan(work, budget, plan_args)
    step_compile(work)
    print("\n== 8. on the emulated Cortex-M7 (QEMU mps2-an500): accuracy of the new head before training ==",
          flush=True)
    before = step_run(work, 0, lr, eval_count)
    print(f"held-out accuracy before training: {100 * before['accuracy']:.1f} % ({before['eval_total']} digits)")
    print(f"\n== 9. train {steps} steps at batch 1 on the emulated Cortex-M7 ({steps / TRAIN_DIGITS:g} passes over the "
          "training digits), then evaluate ==", flush=True)
    t0 = time.time()
    after = step_run(work, steps, lr, eval_count)
    device_seconds = time.time() - t0
    losses = after["losses"]
    tenths = [losses[len(losses) * k // 10:len(losses) * (k + 1) // 10] for k in range(10)]
    print("mean loss per tenth of the run: " + " ".join(f"{sum(t) / len(t):.3f}" for t in tenths if t))
    print(f"prequential accuracy (each digit predicted before it is learnt) over the run: "
          f"{100 * after['prequential']['accuracy']:.1f} %")
    print(f"held-out accuracy after training:  {100 * after['accuracy']:.1f} % ({after['eval_total']} digits)")
    print(format_memory(after["memory"]))
    per_step = after["cost"]["train_step_instructions_median"]
    print(f"cost: {per_step:,} instructions per training step (QEMU instruction count; about "
          f"{per_step / 216e6 * 1e3:.0f} ms at the STM32F746's 216 MHz if one instruction took one cycle)")
    cloud, plot = step_cloud(work, steps, lr, eval_count, after)
    first = min(steps, TRAIN_DIGITS)  # the first pass: every digit is new when it is predicted
    return {"cloud_accuracy": cloud["accuracy"], "plot": str(plot),
            "prequential_accuracy": after["prequential"]["accuracy"],
            "cloud_prequential_accuracy": cloud["prequential"][-1],
            "prequential_first_pass": sum(after["prequential"]["correct"][:first]) / first,
            "cloud_prequential_first_pass": sum(cloud["correct"][:first]) / first,
            "task": TASK, "budget": budget, "steps": steps, "lr": lr,
            "accuracy_before": before["accuracy"], "accuracy_after": after["accuracy"],
            "eval_samples": after["eval_total"], "sram_bytes": after["memory"]["sram_bytes"],
            "flash_bytes": after["memory"]["flash_bytes"], "planned_peak_bytes": plan["peak_bytes"],
            "instructions_per_step": per_step, "device_seconds": device_seconds,
            "seconds": time.time() - start}
