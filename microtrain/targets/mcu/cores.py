"""The microcontroller cores microtrain builds for, as one table: the family description.

Each ``Core`` says how to compile for it (compiler, flags, C library), where its memory is on
the QEMU board that emulates it (the linker script's regions), and how its start-up code
counts instructions. Everything else (start-up code, linker templates, toolchain driver,
QEMU runner, memory report) is shared per architecture family (``arm``, ``riscv``) and
reads this table; a new core is one entry here.

Boards (QEMU 7.2 memory maps, read with ``info mtree``):
  mps2-an385 / an386 / an500 (Cortex-M3 / M4 / M7): ZBT SSRAM1 4 MB at 0 (flash; the vector
      table must be at 0), SSRAM2&3 4 MB at 0x20000000 (SRAM), and 16 MB more RAM (PSRAM)
      for SRAM budgets above 4 MB (full-update builds): at 0x21000000 on AN385/AN386,
      0x60000000 on AN500. SYSCLK 25 MHz.
  mps2-an505 (Cortex-M33, SSE-200): runs in the Secure state it resets into; code SSRAM1
      4 MB at its secure alias 0x10000000 (the reset vector table is there), SSRAM2+3 2+2 MB
      at 0x38000000, PSRAM 16 MB at 0x80000000. SYSCLK 20 MHz.
  mps3-an547 (Cortex-M55, SSE-300): Secure state; the reset vector table is read from the
      ITCM at 0x10000000 (a 1 KB VECTORS region), code and constants in the 8 MB QSPI flash
      at 0x38000000, SRAM in the 512 KB DTCM at 0x30000000, or the 4 MB ISRAM at 0x31000000,
      or 16 MB of DDR at 0x70000000 for larger budgets. SYSCLK 32 MHz.
  virt (RISC-V): 128 MB of DRAM at 0x80000000; the first 16 MB are used as flash, SRAM
      starts at 0x81000000 (up to 64 MB).

Instruction counting: QEMU runs with ``-icount shift=ICOUNT_SHIFT``, so its virtual clock
advances 2^shift ns per instruction. Cortex-M: the SysTick counts that virtual time at
SYSCLK (the same code on every Arm core); instructions = ticks * tick_num >> tick_shift,
e.g. 25 MHz: 40 ns per tick, 64 ns per instruction, ticks * 5 >> 3. RISC-V: QEMU's
``minstret`` is the virtual time in ns under -icount, so instructions = minstret >> 6.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from microtrain.errors import UserError
from microtrain.units import KB, MB

ICOUNT_SHIFT = 6  # must match the start-up code's default (MT_ICOUNT_SHIFT)


@dataclass(frozen=True)
class Region:
    origin: int
    size: int


@dataclass(frozen=True)
class Core:
    name: str                        # the --target / --core name
    family: str                      # "arm" | "riscv": start-up code, linker template, C library
    title: str                       # one line for help texts and tables
    examples: str                    # parts users run it on
    cflags: tuple[str, ...]          # CPU, FPU and ABI flags (compile and link)
    board: str                       # QEMU machine
    flash: Region                    # where the flash budget is placed (size: the most it can be)
    sram: tuple[Region, ...]         # RAM blocks, smallest first: the first that holds the budget
    tick_num: int = 1                # instructions = counter * tick_num >> tick_shift
    tick_shift: int = ICOUNT_SHIFT
    vectors: Region | None = None    # separate region of the reset vector table (else start of flash)
    fpu: str = "none"                # "none" (float in software) | "sp" | "dp"
    features: tuple[str, ...] = ()   # "dsp", "mve", "trustzone", "compressed", ...
    defines: dict[str, str] = field(default_factory=dict)

    @property
    def compiler(self) -> str:
        return FAMILIES[self.family].compiler

    @property
    def qemu(self) -> str:
        return FAMILIES[self.family].qemu


@dataclass(frozen=True)
class Family:
    compiler: str
    qemu: str
    packages: dict[str, str]  # tool -> Debian package(s) that provide it
    link_flags: tuple[str, ...]
    libs: tuple[str, ...]
    compile_flags: tuple[str, ...] = ()  # the C library's headers


FAMILIES: dict[str, Family] = {
    # newlib-nano + rdimon semihosting; newlib-nano leaves float printf/scanf out unless asked
    # (the driver prints losses and may read the lr as text).
    "arm": Family(compiler="arm-none-eabi-gcc", qemu="qemu-system-arm",
                  packages={"arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
                            "qemu-system-arm": "qemu-system-arm"},
                  link_flags=("-nostartfiles", "--specs=nano.specs", "--specs=rdimon.specs", "-u", "_printf_float",
                              "-u", "_scanf_float", "-Wl,--gc-sections"),
                  libs=("-lm", "-lrdimon")),
    # picolibc with its semihosting OS layer and crt0 (data/bss/TLS set-up, constructors, main, exit).
    "riscv": Family(compiler="riscv64-unknown-elf-gcc", qemu="qemu-system-riscv32",
                    packages={"riscv64-unknown-elf-gcc": "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf",
                              "qemu-system-riscv32": "qemu-system-misc"},
                    link_flags=("--specs=picolibc.specs", "--oslib=semihost", "--crt0=semihost", "-Wl,--gc-sections"),
                    libs=("-lm",), compile_flags=("--specs=picolibc.specs",)),
}

_MPS2_FLASH = Region(0x00000000, 4 * MB)
_MPS2_SRAM = Region(0x20000000, 4 * MB)

CORES: dict[str, Core] = {c.name: c for c in [
    Core("cortex-m3", "arm", "Cortex-M3, no FPU (fp32 in software)", "STM32F1, LPC17xx, SAM3",
         ("-mcpu=cortex-m3", "-mfloat-abi=soft", "-mthumb"), "mps2-an385",
         _MPS2_FLASH, (_MPS2_SRAM, Region(0x21000000, 16 * MB)), tick_num=5, tick_shift=3),
    Core("cortex-m4", "arm", "Cortex-M4F, single-precision FPU, DSP", "STM32F4, nRF52840, SAM4",
         ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb"), "mps2-an386",
         _MPS2_FLASH, (_MPS2_SRAM, Region(0x21000000, 16 * MB)), tick_num=5, tick_shift=3,
         fpu="sp", features=("dsp",)),
    Core("cortex-m7", "arm", "Cortex-M7, double-precision FPU, DSP", "STM32F7/H7, i.MX RT",
         ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-mthumb"), "mps2-an500",
         _MPS2_FLASH, (_MPS2_SRAM, Region(0x60000000, 16 * MB)), tick_num=5, tick_shift=3,
         fpu="dp", features=("dsp",)),
    Core("cortex-m33", "arm", "Cortex-M33, single-precision FPU, DSP, TrustZone", "STM32U5/L5, nRF5340, LPC55",
         ("-mcpu=cortex-m33", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard", "-mthumb"), "mps2-an505",
         Region(0x10000000, 4 * MB), (Region(0x38000000, 4 * MB), Region(0x80000000, 16 * MB)),
         tick_num=25, tick_shift=5, fpu="sp", features=("dsp", "trustzone")),
    Core("cortex-m55", "arm", "Cortex-M55, Helium (MVE), FPU, DSP", "Alif Ensemble, Corstone-300",
         ("-mcpu=cortex-m55", "-mfloat-abi=hard", "-mthumb"), "mps3-an547",
         Region(0x38000000, 8 * MB),
         (Region(0x30000000, 512 * KB), Region(0x31000000, 4 * MB), Region(0x70000000, 16 * MB)),
         tick_num=125, tick_shift=8, vectors=Region(0x10000000, 1 * KB), fpu="dp",
         features=("dsp", "mve", "trustzone")),
    Core("riscv32", "riscv", "RV32IMC, no FPU (fp32 in software)", "ESP32-C3/C6-class, GD32VF103, CH32V",
         ("-march=rv32imc", "-mabi=ilp32"), "virt",
         Region(0x80000000, 16 * MB), (Region(0x81000000, 64 * MB),), features=("compressed",)),
    Core("riscv32f", "riscv", "RV32IMAFC, single-precision FPU", "ESP32-P4-class, RV32 cores with F",
         ("-march=rv32imafc", "-mabi=ilp32f"), "virt",
         Region(0x80000000, 16 * MB), (Region(0x81000000, 64 * MB),), fpu="sp", features=("compressed",)),
]}


def get_core(name: str) -> Core:
    """The core of that name; an error naming the known cores otherwise."""
    if name not in CORES:
        raise UserError(f"unknown core {name!r}: choose one of {', '.join(CORES)}")
    return CORES[name]
