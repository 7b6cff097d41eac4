"""``microtrain fleet MODEL --data NAME --devices N --rounds R --out DIR``: fleet learning with Flower.

Many devices improve one model together and only the int8 sparse update travels (see
``microtrain/fleet/``). By default every device is simulated, under Flower's simulation
engine; ``--qemu Q --project DIR`` makes devices 0..Q-1 firmware devices (the compiled
training step on an emulated Cortex-M7) that connect, with the simulated ones, to the server
over gRPC on the loopback. ``--listen ADDR`` serves devices started elsewhere with
``--join ADDR --device I`` (same --out folder: the server writes DIR/setup first).

The server checkpoints every completed round in DIR/fleet_state.npz; rerunning the same
command resumes after the last completed round (``--restart`` discards it).
"""

from __future__ import annotations

import argparse
import logging
import sys

from microtrain.cli.common import MODEL_HELP, UserError, emit, log


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "fleet", help="fleet learning: devices train the int8 sparse update together through a Flower server",
        description="Split --data over --devices devices (Dirichlet, non-IID), and for --rounds rounds let every "
                    "device train --local-steps steps at batch 1 with the device's arithmetic and send only its "
                    "trained sub-tensors; the server checks each update, aggregates them in real units and "
                    "requantizes with the device's rounding. Prints accuracy on the test split per round.")
    p.add_argument("model", metavar="MODEL", nargs="?", default="default",
                   help=MODEL_HELP)
    p.add_argument("--data", default="digits", metavar="NAME", help="dataset split over the devices (default digits)")
    p.add_argument("--classes", type=int, default=10, metavar="N", help="new N-class head (default 10; 0 keeps it)")
    p.add_argument("--scheme", default="last-k:2", metavar="FILE|PRESET", help="update scheme (default last-k:2)")
    p.add_argument("--resolution", type=int, default=None, metavar="R", help="train at R x R")
    p.add_argument("--devices", type=int, default=10, metavar="N", help="devices in the fleet (default 10)")
    p.add_argument("--alpha", type=float, default=0.1, help="Dirichlet alpha of the non-IID split (default 0.1)")
    p.add_argument("--rounds", type=int, default=10, metavar="R", help="rounds (default 10)")
    p.add_argument("--local-steps", type=int, default=20, metavar="K", help="steps per device per round (default 20)")
    p.add_argument("--lr", type=float, default=0.01, help="devices' learning rate (default 0.01)")
    p.add_argument("--rounding", choices=("nearest", "stochastic"), default="stochastic",
                   help="device and server rounding (default stochastic)")
    p.add_argument("--rule", default="fedavg", choices=("fedavg", "fedavgm", "fedmedian", "trimmed-mean"),
                   help="aggregation in real units (default fedavg)")
    p.add_argument("--server-lr", type=float, default=1.0, help="fedavgm: server learning rate (default 1.0)")
    p.add_argument("--server-momentum", type=float, default=0.9, help="fedavgm: server momentum (default 0.9)")
    p.add_argument("--trim", type=float, default=0.2, help="trimmed-mean: fraction cut at each end (default 0.2)")
    p.add_argument("--per-round", type=int, default=None, metavar="M", help="devices per round (default all)")
    p.add_argument("--seed", type=int, default=0, help="split, head, sample order and rounding seeds")
    p.add_argument("--train-limit", type=int, default=None, metavar="N", help="class-balanced training subset")
    p.add_argument("--test-limit", type=int, default=None, metavar="N", help="class-balanced test subset")
    p.add_argument("--qemu", type=int, default=0, metavar="Q", help="devices 0..Q-1 are firmware devices on QEMU")
    p.add_argument("--project", default=None, metavar="DIR",
                   help="the fleet's model and scheme compiled for cortex-m7 (default: compiled into DIR/project)")
    p.add_argument("--fault", action="append", default=[], metavar="D:KIND@R",
                   help="device D misbehaves in round R: drop, nan, range, shape, set, manifest, stale, examples, "
                        "diverge (trains at 1000x the lr: its divergence watch stops it)")
    p.add_argument("--transport", choices=("simulation", "grpc"), default=None,
                   help="Flower simulation engine (default) or gRPC on the loopback (default with --qemu)")
    p.add_argument("--workers", type=int, default=2, help="simulation: worker processes (default 2)")
    p.add_argument("--listen", default=None, metavar="HOST:PORT", help="serve devices started with --join")
    p.add_argument("--join", default=None, metavar="HOST:PORT", help="run one device (--device) of a served fleet")
    p.add_argument("--device", type=int, default=None, metavar="I", help="with --join: this device's id")
    p.add_argument("--min-devices", type=int, default=None, metavar="N",
                   help="devices that must be connected before a round starts (default: all of the round's)")
    p.add_argument("--round-timeout", type=float, default=None, metavar="S", help="stop waiting for replies after S s")
    p.add_argument("--kill-in-round", type=int, default=None, metavar="R",
                   help="fault injection: the server kills itself (SIGKILL) in round R once the updates arrived; "
                        "rerun the command to resume")
    p.add_argument("--keep-updates", action="store_true",
                   help="keep every accepted update and the global rows it started from in DIR/updates/")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (setup, checkpoint, model, history)")
    p.add_argument("--restart", action="store_true", help="discard a checkpoint in --out and start over")
    p.add_argument("-v", "--verbose", action="store_true", help="also show Flower's and Ray's log")
    p.set_defaults(func=run)
    return p


def _logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fleet: %(message)s"))
    logger = logging.getLogger("microtrain.fleet")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        from microtrain.fleet.run import quiet_flower
    except ImportError:  # no flwr: the verb says so when it runs
        return
    quiet_flower(logging.INFO if verbose else logging.ERROR)


def run(args: argparse.Namespace) -> int:
    import microtrain

    _logging(args.verbose)
    if args.join:
        if args.device is None:
            raise UserError("--join needs --device I (this device's id in the fleet)")
        doc = microtrain.join_fleet(args.out, args.device, args.join, args.project)
        log(f"device {args.device}: the server ended the run")
        emit(args, doc, lambda: None)
        return 0
    res = microtrain.run_fleet(
        args.model, args.data, args.out, classes=args.classes or None, scheme=args.scheme,
        resolution=args.resolution, devices=args.devices, alpha=args.alpha, rounds=args.rounds,
        local_steps=args.local_steps, lr=args.lr, rounding=args.rounding, rule=args.rule, server_lr=args.server_lr,
        server_momentum=args.server_momentum, trim=args.trim, per_round=args.per_round, seed=args.seed,
        train_limit=args.train_limit, test_limit=args.test_limit, qemu=args.qemu, project=args.project,
        faults=tuple(args.fault), transport=args.transport, workers=args.workers, listen=args.listen,
        min_devices=args.min_devices, round_timeout=args.round_timeout, kill_in_round=args.kill_in_round,
        keep_updates=args.keep_updates, restart=args.restart)
    doc = res.to_dict()

    def human() -> None:
        print(f"{'round':>5}  {'accuracy':>8}  {'accepted':>8}  {'rejected':>8}  {'dropped':>7}  {'loss':>6}  {'s':>6}")
        for h in res.history:
            loss = f"{h['train_loss']:.3f}" if h.get("train_loss") is not None else ""
            print(f"{h['round']:>5}  {100 * h['accuracy']:>7.2f}%  {len(h.get('accepted', [])):>8}  "
                  f"{len(h.get('rejected', [])):>8}  {len(h.get('dropped', [])):>7}  {loss:>6}  "
                  f"{h.get('seconds', 0):>6.1f}")
        b = res.bytes
        print(f"per device per round: {b['payload_bytes_per_device_per_round']} B of trained rows "
              f"({b['up_bytes_per_device_per_round']} B serialized) vs the whole model {b['int8_model_bytes']} B int8 "
              f"/ {b['fp32_model_bytes']} B fp32")
        print(f"fleet model: {res.model_file} ({res.seconds:.0f} s"
              + (f", resumed after round {res.resumed_from})" if res.resumed_from else ")"))

    emit(args, doc, human)
    return 0
