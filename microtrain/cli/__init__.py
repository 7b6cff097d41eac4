"""The ``microtrain`` command: one module per verb under ``microtrain/cli/``.

Each verb module defines ``register(subparsers) -> argparse.ArgumentParser`` and sets
``func`` on its parser; ``func(args) -> int`` returns the exit code. Every verb gets
``--json``: then it prints exactly one JSON document on stdout (progress and messages go
to stderr) via ``microtrain.cli.common.emit``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from microtrain import __version__
from microtrain.errors import UserError

# The verbs, in the order ``--help`` lists them. A new verb is one module and one line here.
VERB_MODULES = [
    "inspect",
    "predict",
    "eval",
    "quantize",
    "compile",
    "run",
    "finetune",
    "plan",
    "fleet",
]


def build_parser() -> argparse.ArgumentParser:
    from microtrain.cli.common import OneLineErrorParser

    parser = OneLineErrorParser(
        prog="microtrain",
        description="On-device training for microcontrollers: import, quantize, simulate, "
                    "plan, compile to C and run on host or an emulated Cortex-M7.",
    )
    parser.add_argument("--version", action="version", version=f"microtrain {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=OneLineErrorParser)
    sub.required = True
    for name in VERB_MODULES:
        module = importlib.import_module(f"microtrain.cli.{name.replace('-', '_')}")
        verb_parser = module.register(sub)
        verb_parser.add_argument("--json", action="store_true",
                                 help="print one machine-readable JSON document on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a command-line mistake: its one-line message is printed, return the code
        if e.code in (0, None):
            raise  # --help, --version
        return int(e.code) if isinstance(e.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"microtrain {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"microtrain {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
