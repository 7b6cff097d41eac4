"""Sizes in bytes as users write them: the one parser of every budget and memory size.

KB = 1024 bytes and MB = 1024 KB, as everywhere in microtrain. ``parse_size`` is used by the
API (``compile --budget``, ``plan --budget``) and by the microcontroller linker scripts (``--sram``,
``--flash``), so the same text means the same number of bytes everywhere.
"""

from __future__ import annotations

import re

from microtrain.errors import UserError

KB = 1024
MB = 1024 * KB

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]i?[bB]?|[bB])?\s*$")


def parse_size(text: str | int, what: str = "size") -> int:
    """'256KB', '1MB', '300000', '1.5MB', '64k', '2 MiB' -> bytes; a positive whole number of bytes.

    Zero, negative numbers, fractions of a byte and anything else are a ``UserError`` naming
    ``what`` (e.g. "budget") and the accepted forms.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value: float = text
    else:
        m = _SIZE_RE.match(str(text))
        if not m:
            raise UserError(f"cannot read the {what} {text!r}: write bytes (262144) or KB/MB (256KB, 1MB)")
        unit = (m.group(2) or "b").lower()
        value = float(m.group(1)) * {"k": KB, "m": MB}.get(unit[0], 1)
    if value != int(value):
        raise UserError(f"{what} {text!r} is not a whole number of bytes")
    if value <= 0:
        raise UserError(f"{what} {text!r} must be more than 0 bytes")
    return int(value)
