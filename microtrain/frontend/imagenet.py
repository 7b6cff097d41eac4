"""The 1000 ImageNet-1k class names, shipped with microtrain (``imagenet_classes.txt``, its
provenance and BSD-3-Clause notice in ``imagenet_classes.LICENSE``), so that ``predict`` names
the classes of the MCU-zoo models without the shared models folder."""

from __future__ import annotations

from functools import cache
from pathlib import Path

CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")
NUM_CLASSES = 1000


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """Class i's name at index i; empty if the file is missing or not 1000 lines (then no names)."""
    try:
        names = tuple(line.strip() for line in CLASSES_FILE.read_text(encoding="utf-8").splitlines())
    except OSError:
        return ()
    return names if len(names) == NUM_CLASSES and all(names) else ()
