"""Progress and status lines of the API: on stderr, so that stdout stays clean for ``--json``."""

from __future__ import annotations

import sys


def log(msg: str) -> None:
    """One line of progress or status on stderr."""
    print(msg, file=sys.stderr)
