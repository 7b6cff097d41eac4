"""Checks of the numbers the API functions take, so that a Python caller gets the same one-line
``UserError`` a CLI user gets (the CLI's argparse types in ``cli/common.py`` refuse the same
values before any work starts)."""

from __future__ import annotations

import math

from microtrain.errors import UserError


def check_lr(lr: float, flag: str = "--lr") -> float:
    """A learning rate: a finite number > 0 (NaN would leave the weights silently unchanged)."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise UserError(f"{flag} must be a finite number > 0, got {lr!r}")
    return float(lr)


def check_count(value: int | None, flag: str, minimum: int = 1) -> int | None:
    """An integer count >= ``minimum`` (None passes: the default applies)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{flag} must be >= {minimum} (an integer), got {value!r}")
    return value


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UserError(f"--seed must be an integer in [0, 2^32), got {seed!r}")
    return seed
