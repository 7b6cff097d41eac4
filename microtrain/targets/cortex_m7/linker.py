"""Memory budgets -> the linker script of the mps2-an500 board (``mps2_an500.ld.in``).

The FLASH and SRAM regions are exactly the budgets, so the linker refuses a program that
does not fit. The regions must also exist on the emulated board (QEMU ``hw/arm/mps2.c``,
AN500): flash = ZBT SSRAM1, 4 MB at 0; SRAM = ZBT SSRAM2&3, 4 MB at 0x20000000, or the
16 MB PSRAM at 0x60000000 when the budget is larger (full-update builds).
"""

from __future__ import annotations

from pathlib import Path

from microtrain.errors import UserError
from microtrain.units import KB, MB, parse_size

TEMPLATE = Path(__file__).with_name("mps2_an500.ld.in")
__all__ = ["KB", "MB", "parse_size", "render_linker_script", "sram_origin"]  # parse_size: microtrain/units.py

FLASH_MAX = 4 * MB
# (origin, size) of the RAM blocks the board has, smallest-first.
SRAM_BLOCKS = [(0x20000000, 4 * MB), (0x60000000, 16 * MB)]

DEFAULT_FLASH = 1 * MB
DEFAULT_SRAM = 256 * KB
DEFAULT_MIN_HEAP = 2 * KB  # newlib FILE structs + dtoa bigints (the driver's stdio buffers are static): ~1.5 KB
DEFAULT_MIN_STACK = 4 * KB


def fmt_kb(nbytes: int) -> str:
    return f"{nbytes / KB:.1f} KB"


def sram_origin(sram_bytes: int) -> int:
    for origin, size in SRAM_BLOCKS:
        if sram_bytes <= size:
            return origin
    raise UserError(f"SRAM budget {fmt_kb(sram_bytes)} is larger than the emulated board's largest RAM "
                    f"block ({fmt_kb(SRAM_BLOCKS[-1][1])}); ask for at most 16MB")


def render_linker_script(flash: int, sram: int, min_heap: int = DEFAULT_MIN_HEAP,
                         min_stack: int = DEFAULT_MIN_STACK) -> str:
    """The linker script text for these budgets (bytes)."""
    if flash > FLASH_MAX:
        raise UserError(f"flash budget {fmt_kb(flash)} exceeds the emulated board's 4 MB code memory")
    for name, value in (("flash", flash), ("sram", sram)):
        if value <= 0 or value % 8:
            raise UserError(f"{name} budget must be a positive multiple of 8 bytes, got {value}")
    text = TEMPLATE.read_text()
    for key, value in {"FLASH_BYTES": flash, "SRAM_BYTES": sram, "SRAM_ORIGIN": f"0x{sram_origin(sram):08X}",
                       "MIN_HEAP": min_heap, "MIN_STACK": min_stack}.items():
        text = text.replace(f"@{key}@", str(value))
    return text
