"""``microtrain run DIR --target host --data NAME --steps N``: train a compiled project.

Builds the project for the target, writes the driver's input files (samples of the
dataset preprocessed for the model, a seeded shuffle of the train split; a seeded subset
of the test split for ``--eval``), runs it, prints the loss of every step, and exports the
trained model (the compiled model with the trained tensors read back from
``mt_weights.bin``) as a microtrain .json/.npz.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from microtrain.cli.common import UserError, emit, log


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run",
        help="build and run a compiled training project (host or emulated target) on a dataset",
        description="Build the project written by `microtrain compile` for a target, stream --steps training "
                    "samples of --data through it at batch 1, print the loss per step, evaluate on --eval test "
                    "samples and export the trained model.",
    )
    p.add_argument("project", metavar="DIR", help="a project written by `microtrain compile --out DIR`")
    p.add_argument("--target", default="host", help="host (gcc), or a registered target such as qemu")
    p.add_argument("--data", required=True, metavar="NAME",
                   help="fashion-mnist, digits, a folder of class sub-folders or an .npz of images and labels")
    p.add_argument("--steps", type=int, required=True, metavar="N", help="training steps (one sample each)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--eval", type=int, default=0, metavar="N", help="test samples to evaluate after training")
    p.add_argument("--seed", type=int, default=0, help="sample order and stochastic-rounding seed (default 0)")
    p.add_argument("--workdir", default=None, metavar="DIR", help="where the data files go (default DIR/run)")
    p.add_argument("--export", default=None, metavar="PATH",
                   help="trained model path stem (default DIR/trained_model -> .json + .npz)")
    p.add_argument("--sram", default=None, metavar="SIZE",
                   help="cortex-m7/qemu: SRAM budget the firmware is linked at (default 256KB)")
    p.add_argument("--flash", default=None, metavar="SIZE",
                   help="cortex-m7/qemu: flash budget the firmware is linked at (default 1MB)")
    p.set_defaults(func=run)
    return p


def _samples(data: str, split: str, count: int, graph, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from microtrain.data.datasets import check_fits, load_dataset
    from microtrain.data.preprocess import preprocess

    try:
        ds = load_dataset(data, split=split)
        check_fits(ds, graph)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(f"--data {data}: {e}") from None
    order = np.random.default_rng(seed).permutation(len(ds))[:count]
    return preprocess(ds.images[order], graph), ds.labels[order].astype(np.int32)


def run(args: argparse.Namespace) -> int:
    from microtrain.codegen.driver_files import read_weights, write_driver_files
    from microtrain.ir import load_graph, save_graph
    from microtrain.targets import get_target

    project = Path(args.project)
    if not (project / "report.json").exists() or not (project / "model.json").exists():
        raise UserError(f"{project} is not a compiled project (no report.json/model.json); "
                        "run `microtrain compile MODEL --scheme ... --out DIR` first")
    if args.steps < 0 or args.eval < 0:
        raise UserError("--steps and --eval must be >= 0")
    try:
        target = get_target(args.target)
    except KeyError as e:
        raise UserError(str(e)) from None
    graph = load_graph(project / "model")
    rep = json.loads((project / "report.json").read_text())
    log(f"preparing {args.steps} training samples of {args.data} for {graph.meta.get('name', 'the model')}")
    x_train, y_train = _samples(args.data, "train", max(1, args.steps), graph, args.seed)
    x_test = y_test = None
    if args.eval:
        x_test, y_test = _samples(args.data, "test", args.eval, graph, args.seed + 1)
    work = Path(args.workdir) if args.workdir else project / "run"
    write_driver_files(work, x_train, y_train, args.steps, args.lr, args.seed, x_test, y_test, args.eval)
    log(f"building and running on {args.target} in {work}")
    try:
        budgets = {k: v for k in ("sram", "flash") if (v := getattr(args, k, None))}
        res = target.run(project, work, **budgets)
    except (RuntimeError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    if res.weights_path is None:
        raise UserError(f"the run wrote no mt_weights.bin in {work}:\n{res.stdout[-1000:]}")
    trained = read_weights(project, res.weights_path)
    tensors = dict(graph.tensors)
    for name, arr in trained.items():
        tensors[name] = tensors[name].with_data(arr)
    meta = {**graph.meta, "trained": {"steps": args.steps, "lr": args.lr, "data": args.data,
                                      "target": args.target, "scheme": rep.get("scheme", {}).get("name", "")}}
    export = Path(args.export) if args.export else project / "trained_model"
    save_graph(graph.replace(tensors=tensors, meta=meta), export)
    doc = {"project": str(project), "target": args.target, "steps": args.steps, "lr": args.lr,
           "losses": res.losses, "loss_bits": [f"{b:08x}" for b in res.loss_bits],
           "eval_correct": res.eval_correct, "eval_total": res.eval_total,
           "accuracy": (res.eval_correct / res.eval_total) if res.eval_total else None,
           "exported": str(export.with_suffix(".json"))}
    if getattr(res, "memory", None):  # emulated target: memory from the ELF + measured stack, cost per step
        doc["memory"] = res.memory
        doc["cost"] = res.to_dict()["cost"]

    def human() -> None:
        for i, loss in enumerate(res.losses):
            print(f"step {i} loss {loss:.6f}")
        if res.eval_total:
            print(f"eval {res.eval_correct}/{res.eval_total} = {100 * res.eval_correct / res.eval_total:.1f} %")
        print(f"trained model: {doc['exported']}")
        if "memory" in doc:
            from microtrain.report.memory import format_memory

            print(format_memory(doc["memory"]))
            if doc["cost"]["train_step_instructions_median"]:
                print(f"cost: {doc['cost']['train_step_instructions_median']:,} instructions per training step "
                      "(median, QEMU instruction count)")

    emit(args, doc, human)
    return 0
