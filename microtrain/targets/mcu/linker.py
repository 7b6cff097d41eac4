"""Memory budgets -> the linker script of a core's board (``arm.ld.in`` / ``riscv.ld.in``).

The FLASH and SRAM regions are exactly the budgets, so the linker refuses a program that
does not fit. The regions must also exist on the emulated board: flash at the core's flash
region (at most its size), SRAM in the first of the core's RAM blocks that holds the budget
(``cores.py``); a budget the board cannot map is a clear error before anything is compiled.
"""

from __future__ import annotations

from pathlib import Path

from microtrain.errors import UserError
from microtrain.targets.mcu.cores import Core
from microtrain.units import KB, MB, parse_size

__all__ = ["KB", "MB", "parse_size", "fmt_kb", "fmt_size", "sram_origin", "check_budgets", "render_linker_script"]
HERE = Path(__file__).parent
TEMPLATES = {"arm": HERE / "arm.ld.in", "riscv": HERE / "riscv.ld.in"}

DEFAULT_FLASH = 1 * MB
DEFAULT_SRAM = 256 * KB
DEFAULT_MIN_HEAP = 2 * KB  # C library FILE structs + dtoa bigints (the driver's stdio buffers are static): ~1.5 KB
DEFAULT_MIN_STACK = 4 * KB

def fmt_kb(nbytes: int) -> str:
    return f"{nbytes / KB:.1f} KB"


def fmt_size(nbytes: int) -> str:
    return f"{nbytes // MB} MB" if nbytes % MB == 0 else fmt_kb(nbytes)


def sram_origin(core: Core, sram_bytes: int) -> int:
    """Origin of the first RAM block of the core's board that holds ``sram_bytes``."""
    for block in core.sram:
        if sram_bytes <= block.size:
            return block.origin
    largest = max(b.size for b in core.sram)
    raise UserError(f"SRAM budget {fmt_kb(sram_bytes)} is larger than the largest RAM block of {core.name}'s "
                    f"emulated board {core.board} ({fmt_size(largest)}); ask for at most --sram {fmt_size(largest)}")


def check_budgets(core: Core, flash: int, sram: int) -> None:
    for name, value in (("flash", flash), ("sram", sram)):
        if value <= 0 or value % 8:
            raise UserError(f"{name} budget must be a positive multiple of 8 bytes, got {value}")
    if flash > core.flash.size:
        most = fmt_size(core.flash.size)
        raise UserError(f"flash budget {fmt_kb(flash)} exceeds the {most} of code memory of {core.name}'s emulated "
                        f"board {core.board}; ask for at most --flash {most}")
    sram_origin(core, sram)


def render_linker_script(core: Core, flash: int, sram: int, min_heap: int = DEFAULT_MIN_HEAP,
                         min_stack: int = DEFAULT_MIN_STACK) -> str:
    """The linker script text for this core and these budgets (bytes)."""
    check_budgets(core, flash, sram)
    vectors = ""
    if core.vectors is not None:
        vectors = (f"    VECTORS (rx) : ORIGIN = 0x{core.vectors.origin:08X}, LENGTH = {core.vectors.size}\n")
    values = {"CORE": core.name, "BOARD": core.board, "FLASH_ORIGIN": f"0x{core.flash.origin:08X}",
              "FLASH_BYTES": flash, "SRAM_BYTES": sram, "SRAM_ORIGIN": f"0x{sram_origin(core, sram):08X}",
              "MIN_HEAP": min_heap, "MIN_STACK": min_stack, "VECTORS_MEMORY": vectors,
              "VECTORS_REGION": "VECTORS" if core.vectors is not None else "FLASH"}
    text = TEMPLATES[core.family].read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    return text
