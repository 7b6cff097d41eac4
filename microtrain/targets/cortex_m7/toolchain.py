"""arm-none-eabi-gcc for Cortex-M7 + FPU: compile a list of C sources and link them with
the start-up code at the memory budgets; turn the linker's overflow message into an error
saying by how much and which symbols are in the way."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from microtrain.errors import UserError
from microtrain.targets.cortex_m7 import linker
from microtrain.targets.cortex_m7.elfmem import largest_symbols_in_objects

HERE = Path(__file__).parent
STARTUP = HERE / "startup.c"

# Same floating-point contraction as the host build, so float results agree bit for bit.
CPU_FLAGS = ["-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-mthumb"]
# -O2, not -O3: with the DSP forward kernels of mt_nn.h, -O3 is a tie per sparse step (MbV2-w0.35 / Proxyless-w0.3
# / MCUNet-5fps 189.0 / 186.6 / 228.1 M instructions vs -O2's 190.1 / 186.0 / 228.8 M) and adds ~4 KB of flash
# (docs/RESULTS.md, Cortex-M7 section of 12:26 UTC and its 12:40 update).
C_FLAGS = ["-std=c99", "-O2", "-g", "-ffp-contract=off", "-ffunction-sections", "-fdata-sections",
           "-Wall", "-Wextra", "-Werror"]  # as the host build and the runtime contract
# newlib-nano leaves float printf/scanf out unless asked: the driver prints losses and reads lr.
LINK_FLAGS = ["-nostartfiles", "--specs=nano.specs", "--specs=rdimon.specs",
              "-u", "_printf_float", "-u", "_scanf_float", "-Wl,--gc-sections"]
# Functions of the generated model whose calls the start-up code measures (instructions).
WRAPPED = ["mt_train_step", "mt_infer"]

TOOLS = {"arm-none-eabi-gcc": "gcc-arm-none-eabi (and libnewlib-arm-none-eabi)",
         "qemu-system-arm": "qemu-system-arm"}


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise UserError(f"{tool} not found: install the Debian package {TOOLS.get(tool, tool)} "
                        f"(`sudo apt-get install {TOOLS.get(tool, tool).split(' ')[0]}`, or `make setup` as root)")
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


_OVERFLOW_RE = re.compile(r"region [`'](\w+)' overflowed by (\d+) bytes")


def _compile(gcc: str, src: Path, obj: Path, includes: list[Path], cfg: BuildConfig) -> None:
    cmd = [gcc, *CPU_FLAGS, *C_FLAGS, *cfg.extra_cflags, *(f"-I{i}" for i in includes),
           *(f"-D{k}={v}" for k, v in cfg.defines.items()), "-c", str(src), "-o", str(obj)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"arm-none-eabi-gcc failed on {src}:\n{proc.stderr.strip()}")


def build_elf(sources: list[Path], include_dirs: list[Path], out_dir: Path, cfg: BuildConfig | None = None,
              name: str = "firmware") -> Path:
    """Compile ``sources`` + start-up for Cortex-M7, link at the budgets; returns the ELF path."""
    cfg = cfg or BuildConfig()
    gcc = require("arm-none-eabi-gcc")
    out_dir = Path(out_dir)
    obj_dir = out_dir / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    ld = out_dir / f"{name}.ld"
    ld.write_text(linker.render_linker_script(cfg.flash, cfg.sram, cfg.min_heap, cfg.min_stack))

    objects = []
    startup_defs = dict(cfg.defines)
    if cfg.wrap_model:
        startup_defs["MT_WRAP_MODEL"] = "1"
    all_sources = [(STARTUP, BuildConfig(defines=startup_defs))] + [(Path(s), cfg) for s in sources]
    for i, (src, scfg) in enumerate(all_sources):
        obj = obj_dir / f"{i:03d}_{src.stem}.o"
        _compile(gcc, src, obj, list(include_dirs), scfg if src == STARTUP else cfg)
        objects.append(obj)

    elf = out_dir / f"{name}.elf"
    wraps = [f"-Wl,--wrap={w}" for w in WRAPPED] if cfg.wrap_model else []
    cmd = [gcc, *CPU_FLAGS, *LINK_FLAGS, *wraps, "-T", str(ld), f"-Wl,-Map={out_dir / (name + '.map')}",
           *map(str, objects), "-lm", "-lrdimon", "-o", str(elf)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(explain_link_failure(proc.stderr, objects, cfg))
    return elf


def explain_link_failure(stderr: str, objects: list[Path], cfg: BuildConfig) -> str:
    overflows = {m.group(1): int(m.group(2)) for m in _OVERFLOW_RE.finditer(stderr)}
    if not overflows:
        return f"linking for Cortex-M7 failed:\n{stderr.strip()}"
    lines = []
    for region, by in overflows.items():
        budget = cfg.sram if region == "SRAM" else cfg.flash
        flag = "--sram" if region == "SRAM" else "--flash"
        lines.append(f"the program does not fit: {region} overflowed by {by} bytes ({linker.fmt_kb(by)}) "
                     f"over the {linker.fmt_kb(budget)} budget (raise {flag} or shrink the program)")
        if region == "SRAM":
            lines.append(f"  SRAM also keeps {cfg.min_heap} bytes of heap and {cfg.min_stack} bytes of stack free")
        kinds = ("data", "bss") if region == "SRAM" else ("text", "rodata", "data")
        top = largest_symbols_in_objects(objects, kinds)
        if top:
            lines.append(f"  largest {region} symbols in the way:")
            lines += [f"    {size:>10} bytes  {kind:<6} {sym}" for sym, kind, size in top]
    return "\n".join(lines)
