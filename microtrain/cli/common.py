"""Helpers shared by the CLI verbs: the user error, JSON output, progress lines."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from microtrain.api.messages import log
from microtrain.errors import UserError

__all__ = ["UserError", "add_input_range", "emit", "log"]


def _default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def emit(args: Any, doc: dict, human: Callable[[], None]) -> None:
    """With ``--json`` print ``doc`` as the one JSON document on stdout; else call ``human``."""
    if getattr(args, "json", False):
        json.dump(doc, sys.stdout, default=_default)
        sys.stdout.write("\n")
    else:
        human()




def add_input_range(parser) -> None:
    """``--input-range LO,HI``: the real input values of pixels 0..1, for a model whose file does not say."""
    parser.add_argument("--input-range", default=None, metavar="LO,HI",
                        help="real values the model expects for pixel values 0..1 (e.g. --input-range=-1,1); "
                             "default: what the model records, [0, 1] for a .tflite without preprocessing metadata. "
                             "Stored in the models this command writes")
