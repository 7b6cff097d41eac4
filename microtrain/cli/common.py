"""Helpers shared by the CLI verbs: the user error, JSON output, progress lines."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from microtrain.api.messages import log
from microtrain.errors import UserError
from microtrain.units import parse_size

__all__ = ["MODEL_HELP", "UserError", "add_input_range", "emit", "log"]

MODEL_HELP = ("'default', mcunet-5fps | mbv2-w0.35 | proxyless-w0.3, a zoo .pkl, an int8 .tflite, an int8 .onnx "
              "(QDQ or QOperator), a PT2E-quantized .pt2 or a microtrain .json (float .onnx/.pt2 files: "
              "`microtrain quantize` them first)")
"""The MODEL argument of every verb (``microtrain.models.IMPORTERS`` reads the files)."""


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


# --- argparse types: a number the verb cannot use is refused before any work starts ---------
# Each raises argparse.ArgumentTypeError with what was wrong; the parser prints it as one line
# (``OneLineErrorParser``) and exits with code 2.

SEED_LIMIT = 2**32  # seeds reach the C driver as uint32 and numpy's default_rng needs >= 0


def _number(text: str, kind: type) -> float | int:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    v = _number(text, float)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return v


def lr_or_auto(text: str) -> float | str:
    """``auto`` or a learning rate (``positive_float``)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number such as 0.01, or 'auto'") from None
    return positive_float(text)


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, epochs)."""
    v = _number(text, int)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (an integer), got {text!r}")
    return v


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (steps, evaluation samples; 0 means none)."""
    v = _number(text, int)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (an integer), got {text!r}")
    return v


def seed_int(text: str) -> int:
    """A seed: an integer in [0, 2^32)."""
    v = _number(text, int)
    if not 0 <= v < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, {SEED_LIMIT}), got {text!r}")
    return v


def fraction(text: str) -> float:
    """A number in [0, 1) (e.g. the share of the updates spent warming up)."""
    v = _number(text, float)
    if not (math.isfinite(v) and 0 <= v < 1):
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text!r}")
    return v


def percentage(text: str) -> float:
    """A number in (0, 100]."""
    v = _number(text, float)
    if not (math.isfinite(v) and 0 < v <= 100):
        raise argparse.ArgumentTypeError(f"must be a number in (0, 100], got {text!r}")
    return v


def size_arg(what: str) -> Callable[[str], int]:
    """The argparse type of a memory size > 0 in bytes (262144, 256KB, 1MB, 1.5MB; KB = 1024
    bytes), read by ``units.parse_size`` with ``what`` ("budget") naming it in the message."""

    def size(text: str) -> int:
        try:
            return parse_size(text, what)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return size


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a command-line mistake is one line (``microtrain run: error: ...``), exit 2."""

    def error(self, message: str):  # type: ignore[override]
        # "argument --lr: must be ..." (from the types above) reads "--lr must be ..."
        message = re.sub(r"^argument ([^:]+): ", r"\1 ", message)
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
