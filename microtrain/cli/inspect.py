"""``microtrain inspect MODEL``: per-layer table and flash / peak-SRAM totals (like ``stedgeai analyze``)."""

from __future__ import annotations

import argparse

import microtrain
from microtrain.cli.common import MODEL_HELP, emit
from microtrain.report.inspect import format_table


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "inspect",
        help="per-layer table of an int8 model: shapes, params, MACs, flash and peak SRAM",
        description="Print one row per node of an int8 model (op, input -> output shape, kernel/stride/groups, "
                    "parameters, flash bytes, MACs, activation bytes) and the totals: flash (weights + biases + "
                    "per-channel requantization multipliers/shifts) and the int8 inference peak SRAM when the "
                    "nodes run in graph order and every live tensor has its own buffer.",
    )
    p.add_argument("model", metavar="MODEL",
                   help=MODEL_HELP)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    doc = microtrain.inspect(args.model)
    emit(args, doc, lambda: print(f"model: {args.model}\n{format_table(doc)}"))
    return 0
