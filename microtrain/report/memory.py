"""Human-readable memory report of a Cortex-M build (the dict of
``microtrain.targets.mcu.elfmem.MemoryReport.to_dict``), KB = 1024 bytes."""

from __future__ import annotations

KINDS_SRAM = ("arena", "trainable_weights", "driver_buffers", "other_sram", "heap", "stack")
KINDS_FLASH = ("code", "frozen_weights", "setup_packs", "other_flash")
LABELS = {"arena": "arena (activations, gradients)", "trainable_weights": "trainable weights",
          "driver_buffers": "driver I/O buffers (mt_main.c)",
          "other_sram": "runtime + libc data", "heap": "heap (stdio buffers)", "stack": "stack (high-water)",
          "code": "code", "frozen_weights": "frozen weights",
          "setup_packs": "set-up packs (compile-time)", "other_flash": "constants, .data image, tables"}


def _kb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:8.1f} KB"


def format_memory(mem: dict, sram_budget: int | None = None, flash_budget: int | None = None) -> str:
    """A small table: SRAM and flash totals with their breakdown by kind, and the budgets."""
    b = mem.get("breakdown", {})
    sram_budget = sram_budget or mem.get("sram_budget_bytes")
    flash_budget = flash_budget or mem.get("flash_budget_bytes")
    lines = []
    sram = mem.get("sram_bytes")
    head = f"SRAM  {_kb(sram if sram is not None else mem.get('sram_static_bytes'))}"
    head += "  (.data + .bss + heap + stack high-water)" if sram is not None else "  (.data + .bss; not run)"
    if sram_budget:
        head += f"  of {sram_budget / 1024:.0f} KB budget"
    lines.append(head)
    lines += [f"  {LABELS[k]:<32}{_kb(b[k])}" for k in KINDS_SRAM if k in b]
    head = f"flash {_kb(mem.get('flash_bytes'))}  (.text + .rodata + .data image)"
    if flash_budget:
        head += f"  of {flash_budget / 1024:.0f} KB budget"
    lines.append(head)
    lines += [f"  {LABELS[k]:<32}{_kb(b[k])}" for k in KINDS_FLASH if k in b]
    return "\n".join(lines)
