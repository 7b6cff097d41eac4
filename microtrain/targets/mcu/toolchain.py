"""Cross-compile for a core of ``cores.py``: compile a list of C sources and link them with the
family's start-up code at the memory budgets; turn the linker's overflow message into an
error saying by how much and which symbols are in the way; name the Debian package of a
missing tool."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from microtrain.errors import UserError
from microtrain.targets.mcu import linker
from microtrain.targets.mcu.cores import FAMILIES, ICOUNT_SHIFT, Core
from microtrain.targets.mcu.elfmem import SETUP_PACKS, largest_symbols_in_objects, symbol_bytes_in_objects

HERE = Path(__file__).parent
STARTUP = {"arm": [HERE / "startup_arm.c", HERE / "measure.c"],
           "riscv": [HERE / "startup_riscv.c", HERE / "measure.c"]}
STARTUP_FILES = sorted({p for files in STARTUP.values() for p in files} | {HERE / "mt_target.h"})

# Same floating-point contraction as the host build, so float results agree bit for bit.
# -O2, not -O3: on the Cortex-M7 with the DSP forward kernels of mt_nn.h, -O3 is a tie per sparse
# step (MbV2-w0.35 / Proxyless-w0.3 / MCUNet-5fps 189.0 / 186.6 / 228.1 M instructions vs -O2's
# 190.1 / 186.0 / 228.8 M) and adds ~4 KB of flash (docs/RESULTS.md, Cortex-M7 section of 12:26 UTC
# and its 12:40 update).
C_FLAGS = ["-std=c99", "-O2", "-g", "-ffp-contract=off", "-ffunction-sections", "-fdata-sections",
           "-Wall", "-Wextra", "-Werror"]  # as the host build and the runtime contract
# The training step itself (generated model code and runtime kernels, not the driver's printf):
# no float silently widened to double, which a single-precision or no FPU would emulate.
STEP_FLAGS = ["-Wdouble-promotion"]
# Functions of the generated model whose calls the start-up code measures (instructions).
WRAPPED = ["mt_train_step", "mt_infer"]


def require(tool: str) -> str:
    """Path of a cross tool; a UserError naming the Debian package that provides it otherwise."""
    path = shutil.which(tool)
    if path is None:
        package = next((f.packages[tool] for f in FAMILIES.values() if tool in f.packages), tool)
        raise UserError(f"{tool} not found: install the Debian package {package} "
                        f"(`sudo apt-get install {package}`, or `make setup` as root)")
    return path


@dataclass
class BuildConfig:
    flash: int = linker.DEFAULT_FLASH
    sram: int = linker.DEFAULT_SRAM
    min_heap: int = linker.DEFAULT_MIN_HEAP
    min_stack: int = linker.DEFAULT_MIN_STACK
    defines: dict[str, str] = field(default_factory=dict)
    wrap_model: bool = False  # measure mt_train_step / mt_infer calls (needs those symbols)
    extra_cflags: list[str] = field(default_factory=list)
    step_sources: tuple[Path, ...] = ()  # compiled with STEP_FLAGS too


_OVERFLOW_RE = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")


class LinkOverflow(UserError):
    """The program does not fit its budgets: ``regions`` maps each overflowed region (FLASH, SRAM) to
    the bytes it is over (``api/compile.py`` retries a flash overflow with smaller set-up packs)."""

    def __init__(self, message: str, regions: dict[str, int]) -> None:
        super().__init__(message)
        self.regions = regions


def compile_flags(core: Core, cfg: BuildConfig, extra: bool = True) -> list[str]:
    """Flags of one compile; ``extra``: with the build's extra_cflags (not for the start-up code,
    which e.g. -finstrument-functions must not reach)."""
    defines = {**core.defines, **cfg.defines}
    return [*core.cflags, *FAMILIES[core.family].compile_flags, *C_FLAGS, *(cfg.extra_cflags if extra else []),
            *(f"-D{k}={v}" for k, v in defines.items())]


def _compile(gcc: str, core: Core, src: Path, obj: Path, includes: list[Path], flags: list[str]) -> None:
    cmd = [gcc, *flags, *(f"-I{i}" for i in includes), "-c", str(src), "-o", str(obj)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"{Path(gcc).name} failed on {src} for {core.name}:\n{proc.stderr.strip()}")


def build_elf(core: Core, sources: list[Path], include_dirs: list[Path], out_dir: Path,
              cfg: BuildConfig | None = None, name: str = "firmware") -> Path:
    """Compile ``sources`` + the family's start-up for ``core``, link at the budgets; returns the ELF."""
    cfg = cfg or BuildConfig()
    script = linker.render_linker_script(core, cfg.flash, cfg.sram, cfg.min_heap, cfg.min_stack)
    gcc = require(core.compiler)
    out_dir = Path(out_dir)
    obj_dir = out_dir / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    ld = out_dir / f"{name}.ld"
    ld.write_text(script)

    startup_defs = {"MT_ICOUNT_SHIFT": str(ICOUNT_SHIFT), "MT_TICK_NUM": str(core.tick_num),
                    "MT_TICK_SHIFT": str(core.tick_shift)}
    if cfg.wrap_model:
        startup_defs["MT_WRAP_MODEL"] = "1"
    base = compile_flags(core, cfg)
    startup_flags = [*compile_flags(core, cfg, extra=False), *(f"-D{k}={v}" for k, v in startup_defs.items())]
    step = {Path(s).resolve() for s in cfg.step_sources}
    objects = []
    jobs = [(src, startup_flags) for src in STARTUP[core.family]]
    jobs += [(Path(s), base + (STEP_FLAGS if Path(s).resolve() in step else [])) for s in sources]
    for i, (src, flags) in enumerate(jobs):
        obj = obj_dir / f"{i:03d}_{src.stem}.o"
        _compile(gcc, core, src, obj, [HERE, *include_dirs], flags)
        objects.append(obj)

    elf = out_dir / f"{name}.elf"
    wraps = [f"-Wl,--wrap={w}" for w in WRAPPED] if cfg.wrap_model else []
    family = FAMILIES[core.family]
    cmd = [gcc, *core.cflags, *family.link_flags, *wraps, "-T", str(ld), f"-Wl,-Map={out_dir / (name + '.map')}",
           *map(str, objects), *family.libs, "-o", str(elf)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        overflows = {m.group(1): int(m.group(2)) for m in _OVERFLOW_RE.finditer(proc.stderr)}
        if not overflows:
            raise UserError(f"linking for {core.name} failed:\n{proc.stderr.strip()}")
        raise LinkOverflow(explain_link_overflow(core, overflows, objects, cfg), overflows)
    return elf


def explain_link_overflow(core: Core, overflows: dict[str, int], objects: list[Path], cfg: BuildConfig) -> str:
    """The linker's region overflows (region -> bytes over) as a message: the budget to raise, and what
    takes the room."""
    lines = []
    for region, by in overflows.items():
        budget = cfg.sram if region == "SRAM" else cfg.flash
        flag = "--sram" if region == "SRAM" else "--flash"
        lines.append(f"the program does not fit {core.name}: {region} overflowed by {by} bytes "
                     f"({linker.fmt_kb(by)}) over the {linker.fmt_kb(budget)} budget (raise {flag} or shrink the "
                     "program)")
        if region == "SRAM":
            lines.append(f"  SRAM also keeps {cfg.min_heap} bytes of heap and {cfg.min_stack} bytes of stack free")
        packs = symbol_bytes_in_objects(objects, SETUP_PACKS, ("rodata",)) if region == "FLASH" else 0
        if packs:
            lines.append(f"  {linker.fmt_kb(packs)} of flash are compile-time set-up packs (PK_*): recompile with "
                         "--packs words or --packs off to trade int8 forward speed for flash (docs/targets.md)")
        kinds = ("data", "bss") if region == "SRAM" else ("text", "rodata", "data")
        top = largest_symbols_in_objects(objects, kinds)
        if top:
            lines.append(f"  largest {region} symbols in the way:")
            lines += [f"    {size:>10} bytes  {kind:<6} {sym}" for sym, kind, size in top]
    return "\n".join(lines)
