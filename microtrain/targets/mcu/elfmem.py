"""Memory truth from the linked ELF (pyelftools): flash and static SRAM by section, and a
breakdown by kind (arena, trainable weights, frozen weights, code, ...) from symbol names.

SRAM in use at run time = .data + .bss + heap in use + stack high-water (the last two are
measured on the emulator, see ``qemu.py``). Flash = everything loaded from flash: vector
table, .text, .rodata, unwind tables, init arrays and the .data image.

Naming convention of the code generator (``microtrain/codegen/context.py``):
  ``mt_arena*``                 the planned activation/gradient arena (.bss)
  ``P_*`` in .data/.bss         trained weights and biases, updated in place (RAM)
  ``P_*`` in .rodata            frozen weights and biases (flash)
  ``PK_*`` in .rodata           compile-time set-up packs of frozen convs (kind setup_packs)
  other ``*`` in .rodata        constants (multipliers, shifts, QAS factors, params): other_flash
(``mt_trainable_*`` / ``mt_frozen_*`` are accepted too, for hand-written programs.)
  static data of ``mt_main.c``  the driver's sample/logit buffers (kind driver_buffers)
Everything else: code (.text), runtime/libc data, start-up tables.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from elftools.elf.elffile import ELFFile

DRIVER_FILE = "mt_main.c"  # static buffers of the generated driver (sample, logits): kind driver_buffers
# Output sections of the linker scripts (arm.ld.in, riscv.ld.in). Flash also holds the images of
# the initialised RAM sections (.data, .tdata).
FLASH_SECTIONS = (".isr_vector", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".init_array")
SRAM_SECTIONS = (".data", ".tdata", ".tbss_space", ".bss")  # .tbss_space is the room of .tbss
DATA_IMAGES = (".data", ".tdata")
SETUP_PACKS = "PK_*"  # the code generator's set-up pack arrays (codegen/context.py CContext.conv_pack)

# (kind, glob on symbol name, section kinds) checked in order; first match wins.
DEFAULT_RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("arena", "mt_arena*", ("data", "bss")),
    ("trainable_weights", "mt_trainable_*", ("data", "bss")),
    ("trainable_weights", "P_*", ("data", "bss")),
    ("frozen_weights", "P_*", ("rodata",)),
    ("frozen_weights", "mt_frozen_*", ("rodata",)),
    ("setup_packs", SETUP_PACKS, ("rodata",)),
]


_KINDS = {".text": "text", ".rodata": "rodata", ".srodata": "rodata", ".data": "data", ".sdata": "data",
          ".tdata": "data", ".bss": "bss", ".sbss": "bss", ".tbss": "bss"}


def _section_kind(name: str) -> str | None:
    for base, kind in _KINDS.items():
        if name == base or name.startswith(base + "."):
            return kind
    if name == "COMMON":
        return "bss"
    return None


@dataclass
class MemoryReport:
    sections: dict[str, int]                     # allocated section -> bytes
    flash_bytes: int                             # code + read-only data + .data image
    sram_static_bytes: int                       # .data + .bss
    breakdown: dict[str, int]                    # kind -> bytes (static part)
    largest: list[tuple[str, str, int]] = field(default_factory=list)  # (symbol, section kind, bytes)
    stack_high_water: int | None = None
    heap_used: int | None = None

    @property
    def sram_bytes(self) -> int | None:
        """.data + .bss + heap + stack high-water: the run-time peak; None before a run."""
        if self.stack_high_water is None:
            return None
        return self.sram_static_bytes + (self.heap_used or 0) + self.stack_high_water

    def to_dict(self) -> dict:
        sram = self.sram_bytes
        breakdown = dict(self.breakdown)
        if self.stack_high_water is not None:
            breakdown["stack"] = self.stack_high_water
            breakdown["heap"] = self.heap_used or 0
        return {
            "flash_bytes": self.flash_bytes,
            "sram_static_bytes": self.sram_static_bytes,
            "sram_bytes": sram,
            "sram_includes": ".data + .bss + heap in use + stack high-water" if sram is not None
            else "not run yet: .data + .bss only",
            "stack_high_water_bytes": self.stack_high_water,
            "heap_used_bytes": self.heap_used,
            "sections": self.sections,
            "breakdown": breakdown,
            "largest_symbols": [{"name": n, "section": k, "bytes": b} for n, k, b in self.largest],
        }


def _symbols(elf: ELFFile, with_file: bool = False):
    """(name, section name, size) of every sized data/code symbol; with ``with_file`` also the
    source file of local (static) symbols, from the STT_FILE symbol that precedes them."""
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None:
        return
    current_file = ""
    for sym in symtab.iter_symbols():
        if sym["st_info"]["type"] == "STT_FILE":
            current_file = sym.name
            continue
        if with_file and sym["st_info"]["bind"] != "STB_LOCAL":
            current_file = ""
        size = sym["st_size"]
        if size == 0 or sym["st_info"]["type"] not in ("STT_OBJECT", "STT_FUNC"):
            continue
        shndx = sym["st_shndx"]
        extra = (current_file,) if with_file else ()
        if shndx == "SHN_COMMON":
            yield (sym.name, "COMMON", size, *extra)
        elif isinstance(shndx, int):
            yield (sym.name, elf.get_section(shndx).name, size, *extra)


def memory_report(elf_path: Path, rules: list[tuple[str, str, tuple[str, ...]]] | None = None,
                  trainable_names: set[str] | None = None, top: int = 10) -> MemoryReport:
    """Read sections and symbols of a linked ELF and classify the bytes."""
    rules = DEFAULT_RULES if rules is None else rules
    trainable_names = trainable_names or set()
    with open(elf_path, "rb") as f:
        elf = ELFFile(f)
        sections = {s.name: s["sh_size"] for s in elf.iter_sections()
                    if s["sh_flags"] & 0x2 and s.name not in (".reserve", ".tbss")}  # SHF_ALLOC
        syms_f = list(_symbols(elf, with_file=True))
    syms = [t[:3] for t in syms_f]
    driver = {(n, sec) for n, sec, _s, f in syms_f if f == DRIVER_FILE}

    flash = sum(v for k, v in sections.items() if k in FLASH_SECTIONS + DATA_IMAGES)
    sram_static = sum(sections.get(k, 0) for k in SRAM_SECTIONS)

    breakdown = {"arena": 0, "trainable_weights": 0, "frozen_weights": 0, "driver_buffers": 0, "other_sram": 0,
                 "code": sections.get(".text", 0) + sections.get(".isr_vector", 0), "setup_packs": 0,
                 "other_flash": 0}
    for name, sec, size in syms:
        kind = _section_kind(sec)
        if kind not in ("data", "bss", "rodata"):
            continue
        label = None
        if (name, sec) in driver and kind in ("data", "bss"):
            label = "driver_buffers"
        elif name in trainable_names:
            label = "trainable_weights"
        for rule_kind, pattern, kinds in rules:
            if label is None and kind in kinds and fnmatch.fnmatchcase(name, pattern):
                label = rule_kind
        if label is not None:
            breakdown[label] += size
    breakdown["other_sram"] = (sram_static - breakdown["arena"] - breakdown["trainable_weights"]
                               - breakdown["driver_buffers"])
    breakdown["other_flash"] = flash - breakdown["code"] - breakdown["frozen_weights"] - breakdown["setup_packs"]
    data_syms = [(n, _section_kind(s) or s, z) for n, s, z in syms if _section_kind(s) in ("data", "bss", "rodata")]
    data_syms.sort(key=lambda t: -t[2])
    return MemoryReport(sections=sections, flash_bytes=flash, sram_static_bytes=sram_static,
                        breakdown=breakdown, largest=data_syms[:top])


def _object_symbols(objects: list[Path], kinds: tuple[str, ...]):
    """(object, name, section kind, size) of the symbols of unlinked objects in sections of ``kinds``
    (an unreadable object is skipped: these feed link-error messages)."""
    for obj in objects:
        try:
            with open(obj, "rb") as f:
                for name, sec, size in _symbols(ELFFile(f)):
                    kind = _section_kind(sec)
                    if kind in kinds:
                        yield obj, name, kind, size
        except OSError:
            continue


def largest_symbols_in_objects(objects: list[Path], kinds: tuple[str, ...], top: int = 8) -> list[tuple[str, str, int]]:
    """The biggest symbols of unlinked objects whose section is one of ``kinds`` (for link errors)."""
    found = [(f"{name} ({Path(obj).name.split('_', 1)[-1]})", kind, size)
             for obj, name, kind, size in _object_symbols(objects, kinds)]
    found.sort(key=lambda t: -t[2])
    return found[:top]


def symbol_bytes_in_objects(objects: list[Path], pattern: str, kinds: tuple[str, ...]) -> int:
    """Total size of the symbols of unlinked objects named like ``pattern`` in sections of ``kinds``."""
    return sum(size for _obj, name, _kind, size in _object_symbols(objects, kinds)
               if fnmatch.fnmatchcase(name, pattern))
