"""``microtrain plan MODEL --data NAME --budget 160KB --out scheme.json``: the best sparse
update scheme that fits a memory budget, with its evidence (``microtrain.plan``: contribution
analysis, evolutionary and random search, the scheme compiled again; see ``api/plan.py``).
"""

from __future__ import annotations

import argparse
import sys

import microtrain
from microtrain.cli.common import MODEL_HELP, add_input_range, emit, lr_or_auto, positive_int, seed_int, size_arg
from microtrain.report.tables import Column, fmt_kb, render


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "plan",
        help="find the sparse update scheme with the best accuracy proxy within a memory budget",
        description="Measure the contribution of each bias range and each (layer, ratio) weight update by short "
                    "fine-tuning runs on DATA, then search (evolutionary, random search as baseline) for the "
                    "scheme with the largest summed contribution whose compiled peak memory fits --budget. "
                    "Writes the scheme JSON (--out) and a frontier plot.",
    )
    p.add_argument("model", metavar="MODEL",
                   help=MODEL_HELP)
    p.add_argument("--data", required=True, metavar="NAME",
                   help="fashion-mnist, digits, a folder of class sub-folders or an .npz (see `microtrain eval`)")
    p.add_argument("--budget", required=True, type=size_arg("budget"), metavar="SIZE",
                   help="peak SRAM of the compiled training step, e.g. 160KB or 163840 (KB = 1024 bytes)")
    p.add_argument("--classes", type=positive_int, default=None, metavar="N",
                   help="use the first N classes of the data (a new N-way head when the model's differs)")
    p.add_argument("--resolution", type=positive_int, default=None, metavar="R",
                   help="input resolution of the analysis runs (default: the model's); memory is always planned "
                        "at the model's own resolution")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="training images per analysis run "
                   "(class-balanced subset; default 500, or 5/8 of a training split under 800 images)")
    p.add_argument("--val-limit", "--test-limit", dest="test_limit", type=positive_int, default=None, metavar="N",
                   help="held-out images scoring each run, taken from the training split apart from the --limit "
                        "images, so that the test split stays unseen by the choice (default 300, or 3/8 of a "
                        "training split under 800 images)")
    p.add_argument("--epochs", type=positive_int, default=2, help="epochs per analysis run (default 2)")
    p.add_argument("--lr", type=lr_or_auto, default="auto", metavar="LR",
                   help="learning rate of the analysis runs (SGD+QAS), or 'auto' (default): the one of "
                        "0.001/0.003/0.01/0.03 whose base run scores best on the held-out images")
    p.add_argument("--candidates", type=positive_int, default=12, metavar="N",
                   help="weight-update candidates: the last N convs (default 12)")
    p.add_argument("--evaluations", type=positive_int, default=200, metavar="N",
                   help="schemes compiled per search (evolutionary and random each, default 200)")
    p.add_argument("--population", type=positive_int, default=20, help="evolutionary population (default 20)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="worker processes (default: CPU count)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local process pool (default) or a Ray cluster (RAY_ADDRESS, else a local instance)")
    p.add_argument("--analysis", default=None, metavar="DIR",
                   help="analysis folder to reuse or resume (default: next to --out, named after the inputs)")
    p.add_argument("--out", default="scheme.json", metavar="FILE", help="scheme file to write (default scheme.json)")
    p.add_argument("--plot", default=None, metavar="PNG", help="frontier plot (default: <out>.frontier.png)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the runs, the head and the searches")
    add_input_range(p)
    p.set_defaults(func=run)
    return p


def _bar(desc: str):
    from tqdm import tqdm

    state: dict = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=desc, file=sys.stderr, leave=True)
        bar = state["bar"]
        bar.total = total
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def run(args: argparse.Namespace) -> int:
    result = microtrain.plan(args.model, args.data, args.budget, classes=args.classes, resolution=args.resolution,
                             limit=args.limit, test_limit=args.test_limit, epochs=args.epochs, lr=args.lr,
                             candidates=args.candidates, evaluations=args.evaluations, population=args.population,
                             workers=args.workers, backend=args.backend, analysis=args.analysis, out=args.out,
                             plot=args.plot, seed=args.seed, progress=_bar, input_range=args.input_range)
    doc, d, plan = result.doc, result.description, result.step.plan
    peak, budget, breakdown = doc["peak_bytes"], doc["budget_bytes"], doc["breakdown"]
    evo, rnd = doc["search"]["evolutionary"], doc["search"]["random"]

    def human() -> None:
        cols = [Column("layer"), Column("bias"), Column("weights", align=">"), Column("channels", align=">"),
                Column("RAM KB", align=">", fmt=fmt_kb)]
        body = [[r["layer"], "yes" if r["bias"] else "", f"{r['ratio']:g}" if r["ratio"] else "",
                 f"{r['channels']}/{r['out_channels']}" if r["channels"] else "", r["ram_bytes"]]
                for r in doc["layers"]]
        print(render(cols, body, totals=["trained tensors", "", "", "", plan.trainable_bytes]))
        print(f"\npeak memory {peak} B ({peak / 1024:.1f} KB) of budget {budget / 1024:.1f} KB = arena "
              f"{plan.arena_bytes / 1024:.1f} KB + trained tensors in RAM {plan.trainable_bytes / 1024:.1f} KB")
        print("at the peak: " + ", ".join(f"{k} {v / 1024:.1f} KB" for k, v in breakdown.items()
                                          if k != "at_step" and v))
        best, base = doc["predicted_accuracy"], doc["classifier_accuracy"]
        print(f"predicted accuracy {100 * best:.1f} % = classifier-only {100 * base:.1f} % "
              f"+ gain {100 * (best - base):.1f} points (additive proxy, "
              f"{d['train_samples']} images, {result.epochs} epochs, {d['resolution']}x{d['resolution']})")
        print(f"search: evolutionary {100 * evo['proxy']:.1f} % vs random {100 * rnd['proxy']:.1f} % at "
              f"{evo['evaluations']} / {rnd['evaluations']} compiled schemes")
        print(f"wrote {doc['scheme_file']} and {doc['plot']}; the same peak: microtrain compile {args.model} "
              f"--scheme {doc['scheme_file']} --classes {d['classes']} --out DIR")

    emit(args, doc, human)
    return 0
