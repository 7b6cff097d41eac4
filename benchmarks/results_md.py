"""The one place benchmarks write to: a section appended to docs/RESULTS.md.

Every benchmark prints its table and, unless ``--no-write`` (``add_flag``), appends a section
(``append``) with its numbers, the exact command (``command``) and the machine (``machine``).
Imported by the scripts of this folder as ``import results_md`` (the folder is on ``sys.path``
when a script runs).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "RESULTS.md"


def add_flag(parser: argparse.ArgumentParser, also: str = "") -> None:
    """``--no-write``: print only. The same flag in every benchmark; ``also`` names what else it skips."""
    parser.add_argument("--no-write", action="store_true",
                        help=f"print only; do not append to docs/RESULTS.md{also}")


def command(script: str, argv: list[str] | None = None, prefix: str = ".venv/bin/python") -> str:
    """The command line that reproduces this run: ``prefix``, ``script`` (relative to the
    repository) and the arguments (``sys.argv[1:]`` unless given), each shell-quoted."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join([prefix, script, *(shlex.quote(a) for a in args)])


def machine() -> str:
    """The machine a section's numbers come from: architecture and CPU count."""
    return f"{platform.machine()}, nproc {os.cpu_count()}"


def append(section: str) -> Path:
    """Append ``section`` to docs/RESULTS.md after one blank line, and say so on stderr."""
    with RESULTS.open("a") as f:
        f.write("\n" + section.strip("\n") + "\n")
    print(f"appended to {RESULTS}", file=sys.stderr)
    return RESULTS
