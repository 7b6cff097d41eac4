"""The microcontroller targets' infrastructure on small hand-written C programs, on every core of
microtrain/targets/mcu/cores.py: build at the budgets, run under the core's QEMU board with
semihosting (files, exit codes, the FPU), memory truth from the ELF, stack high-water,
deterministic instruction counts, faults, and the clear errors (unknown core, a budget the
board cannot map, a program that does not fit, a missing toolchain or emulator). Tools come
from `make test` (gcc-arm-none-eabi, qemu-system-arm, gcc-riscv64-unknown-elf,
picolibc-riscv64-unknown-elf, qemu-system-misc); a core whose tools are missing is skipped
with the reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from microtrain.cli.common import UserError
from microtrain.targets.mcu import CORES, BuildConfig, build_elf, get_core, linker, memory_report, run_elf
from microtrain.targets.mcu.cores import FAMILIES

pytestmark = pytest.mark.target
ALL = list(CORES)
ONE_PER_FAMILY = ["cortex-m4", "riscv32"]


def tools_or_skip(core_name: str):
    core = get_core(core_name)
    for tool, package in FAMILIES[core.family].packages.items():
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian package {package}; `make test` installs it)")
    return core


def _build(tmp_path: Path, core, code: str, name: str = "prog", **cfg) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(code)
    return build_elf(core, [src], [], tmp_path / f"build_{core.name}_{name}", BuildConfig(**cfg), name=name)


HELLO = r"""
#include <stdio.h>
#include <string.h>
volatile float k = 1.25f;
int main(void) {
    float x = 1.5f;
    for (int i = 0; i < 10; i++) x *= k;                /* the FPU (or soft float) works */
    printf("hello %d\n", (int)(x * 10000.0f));
    char buf[32] = {0};
    FILE *f = fopen("in.txt", "rb");
    if (!f) return 3;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    printf("read %u [%s]\n", (unsigned)n, buf);
    f = fopen("out.bin", "wb");
    for (int i = 0; i < 4; i++) fputc('A' + i, f);
    fclose(f);
    return 7;
}
"""


@pytest.mark.parametrize("name", ALL)
def test_hello_semihosting_files_and_exit_code(tmp_path, name):
    core = tools_or_skip(name)
    elf = _build(tmp_path, core, HELLO)
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.txt").write_bytes(b"from host")
    run = run_elf(core, elf, work, timeout=60)
    assert run.returncode == 7, run.stdout + run.stderr
    assert f"hello {int(1.5 * 1.25 ** 10 * 10000)}" in run.stdout
    assert "read 9 [from host]" in run.stdout
    assert (work / "out.bin").read_bytes() == b"ABCD"
    # The start-up code reports its measurements after main returns.
    assert run.stack_high_water is not None and 32 < run.stack_high_water < 4096
    assert run.heap_used is not None
    assert run.instructions_total is not None and run.instructions_total > 1000


COUNT_PROG = r"""
#include <stdint.h>
#include <stdio.h>
#include "mt_target.h"
__attribute__((noinline)) static void spin(volatile int n) { for (int i = 0; i < n; i++) __asm volatile("nop"); }
int main(void) {
    for (int n = 1000; n <= 3000; n += 1000) {
        uint64_t a = mt_target_instructions();
        spin(n);
        uint64_t b = mt_target_instructions();
        printf("n %d insns %lu\n", n, (unsigned long)(b - a));
    }
    return 0;
}
"""


@pytest.mark.parametrize("name", ALL)
def test_instruction_count_is_deterministic_and_linear(tmp_path, name):
    core = tools_or_skip(name)
    elf = _build(tmp_path, core, COUNT_PROG)
    runs = [run_elf(core, elf, tmp_path, timeout=60) for _ in range(2)]
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].instructions_total == runs[1].instructions_total
    counts = [int(line.split()[-1]) for line in runs[0].stdout.splitlines() if line.startswith("n ")]
    # Each loop iteration is the same few instructions: equal differences, exact on RISC-V
    # (minstret), within a few instructions on the Cortex-M cores (the SysTick ticks every
    # 0.6-0.8 instructions and each reading truncates).
    per_iter = (counts[1] - counts[0]) / 1000
    assert abs((counts[2] - counts[1]) - (counts[1] - counts[0])) <= (0 if core.family == "riscv" else 4)
    assert 3 <= per_iter <= 9 and abs(per_iter - round(per_iter)) <= 0.004, per_iter


# An address with nothing behind it on every board.
FAULT_ADDRESS = {"arm": "0x90000000", "riscv": "0x90000000"}


@pytest.mark.parametrize("name", ALL)
def test_fault_is_reported(tmp_path, name):
    core = tools_or_skip(name)
    addr = {"cortex-m55": "0xF0000000"}.get(name, FAULT_ADDRESS[core.family])
    elf = _build(tmp_path, core, f"int main(void) {{ return *(volatile int *){addr}; }}\n")
    with pytest.raises(UserError, match=f"crashed on the emulated {name}"):
        run_elf(core, elf, tmp_path, timeout=30)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_over_budget_sram_fails_at_link_time_with_the_culprit(tmp_path, name):
    core = tools_or_skip(name)
    code = "#include <stdint.h>\nint8_t mt_arena[300000];\n" \
           "int main(void) { mt_arena[7] = 1; return mt_arena[7]; }\n"
    with pytest.raises(UserError) as e:
        _build(tmp_path, core, code)
    msg = str(e.value)
    assert f"does not fit {name}: SRAM overflowed by" in msg
    by = int(msg.split("SRAM overflowed by ")[1].split()[0])
    # 300000 bytes of arena + the heap/stack reserve + a little libc data, minus 256 KB.
    reserve = linker.DEFAULT_MIN_HEAP + linker.DEFAULT_MIN_STACK
    assert 300000 + reserve - 262144 <= by <= 300000 + reserve - 262144 + 4096
    assert "mt_arena" in msg and "300000 bytes" in msg and "--sram" in msg
    # The same program fits a larger budget.
    assert _build(tmp_path, core, code, name="fits", sram=linker.parse_size("512KB")).exists()


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_over_budget_flash_names_the_constant(tmp_path, name):
    core = tools_or_skip(name)
    code = "#include <stdint.h>\nconst int8_t mt_frozen_big[1200000] = {1, 2, 3};\nvolatile int k = 2;\n" \
           "int main(void) { return mt_frozen_big[k]; }\n"
    with pytest.raises(UserError) as e:
        _build(tmp_path, core, code)
    msg = str(e.value)
    assert "FLASH overflowed by" in msg and "mt_frozen_big" in msg and "--flash" in msg


MEMORY_PROG = r"""
#include <stdint.h>
int8_t mt_arena[12345];
int8_t mt_trainable_w0[1000] = {1};
const int8_t mt_frozen_w1[5000] = {1, 2};
volatile int k = 1;
int main(void) {
    mt_arena[k] = mt_frozen_w1[k];
    mt_trainable_w0[k] += mt_arena[k];
    return mt_trainable_w0[k] == 2 ? 0 : 1;  /* 0 + frozen[1] */
}
"""


@pytest.mark.parametrize("name", ONE_PER_FAMILY + ["cortex-m55"])
def test_elf_memory_report_kinds(tmp_path, name):
    core = tools_or_skip(name)
    elf = _build(tmp_path, core, MEMORY_PROG)
    rep = memory_report(elf)
    assert rep.breakdown["arena"] == 12345
    assert rep.breakdown["trainable_weights"] == 1000
    assert rep.breakdown["frozen_weights"] == 5000
    sram_sections = [s for s in (".data", ".tdata", ".tbss_space", ".bss") if s in rep.sections]
    assert rep.sram_static_bytes == sum(rep.sections[s] for s in sram_sections)
    assert rep.sections[".bss"] >= 12345 and rep.sections[".data"] >= 1000
    assert rep.flash_bytes == sum(v for s, v in rep.sections.items() if s not in (".bss", ".tbss_space"))
    assert rep.flash_bytes >= 5000 + 1000 + rep.sections[".text"]
    run = run_elf(core, elf, tmp_path, timeout=60)
    assert run.returncode == 0
    rep.stack_high_water, rep.heap_used = run.stack_high_water, run.heap_used
    d = rep.to_dict()
    assert d["sram_bytes"] == rep.sram_static_bytes + run.heap_used + run.stack_high_water
    assert d["breakdown"]["stack"] == run.stack_high_water


STACK_PROG = r"""
#include <stdint.h>
#include <string.h>
#ifndef LOCAL_BYTES
#define LOCAL_BYTES 4
#endif
__attribute__((noinline)) static int use_stack(volatile int seed) {
    volatile uint8_t local[LOCAL_BYTES];
    memset((void *)local, seed, sizeof local);
    return local[LOCAL_BYTES - 1];
}
int main(void) { return use_stack(0) ; }
"""


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_stack_high_water_grows_by_the_local_array(tmp_path, name):
    core = tools_or_skip(name)
    marks = []
    for nbytes in (4, 8192):
        elf = _build(tmp_path, core, STACK_PROG, name=f"stack{nbytes}", defines={"LOCAL_BYTES": str(nbytes)},
                     min_stack=16384)
        run = run_elf(core, elf, tmp_path, timeout=60)
        assert run.returncode == 0
        marks.append(run.stack_high_water)
    # Small program: only start-up and libc frames. With the array: the array plus the few
    # frames above it (start-up -> main -> use_stack), a few hundred bytes at most.
    assert marks[0] < 512, marks
    assert 8192 <= marks[1] <= 8192 + 256, marks


def test_unknown_core_is_a_clear_error():
    with pytest.raises(UserError, match=r"unknown core 'cortex-m99': choose one of cortex-m3, .*riscv32"):
        get_core("cortex-m99")


@pytest.mark.parametrize("name,sram,flash,match", [
    ("cortex-m7", "32MB", "1MB", r"larger than the largest RAM block of cortex-m7's emulated board mps2-an500 "
                                 r"\(16 MB\)"),
    ("cortex-m55", "17MB", "1MB", r"mps3-an547 \(16 MB\); ask for at most --sram 16 MB"),
    ("riscv32", "65MB", "1MB", r"riscv32's emulated board virt \(64 MB\)"),
    ("cortex-m33", "256KB", "5MB", r"flash budget 5120.0 KB exceeds the 4 MB of code memory of cortex-m33"),
    ("cortex-m4", "256KB", "1001", "positive multiple of 8 bytes"),
])
def test_budget_the_board_cannot_map(name, sram, flash, match):
    with pytest.raises(UserError, match=match):
        linker.render_linker_script(get_core(name), linker.parse_size(flash), linker.parse_size(sram))


def test_budgets_pick_the_board_memory():
    m7, m55 = get_core("cortex-m7"), get_core("cortex-m55")
    # Budgets above the 4 MB SSRAM block move SRAM to the 16 MB PSRAM of the board.
    assert "0x60000000" in linker.render_linker_script(m7, linker.MB, 6 * linker.MB)
    assert "0x20000000" in linker.render_linker_script(m7, linker.MB, 256 * linker.KB)
    # M55: the DTCM up to 512 KB, then the 4 MB ISRAM; the vector table in the ITCM.
    assert "ORIGIN = 0x30000000" in linker.render_linker_script(m55, linker.MB, 512 * linker.KB)
    assert "ORIGIN = 0x31000000" in linker.render_linker_script(m55, linker.MB, 513 * linker.KB)
    assert "VECTORS (rx) : ORIGIN = 0x10000000" in linker.render_linker_script(m55, linker.MB, 256 * linker.KB)


@pytest.mark.parametrize("text,expected", [("256KB", 262144), ("1MB", 1048576), ("300000", 300000),
                                           ("64k", 65536), ("1.5MB", 1572864), (4096, 4096), ("2 MiB", 2097152)])
def test_parse_size(text, expected):
    assert linker.parse_size(text) == expected


def test_parse_size_error():
    with pytest.raises(UserError, match="cannot read the size"):
        linker.parse_size("lots")


@pytest.mark.parametrize("name,tool,package", [
    ("cortex-m4", "arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi"),
    ("riscv32", "riscv64-unknown-elf-gcc", "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"),
])
def test_missing_toolchain_names_the_debian_package(tmp_path, monkeypatch, name, tool, package):
    core = get_core(name)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t: None if t == tool else real_which(t))
    with pytest.raises(UserError, match=f"{tool} not found: install the Debian package {package}"):
        _build(tmp_path, core, HELLO)


@pytest.mark.parametrize("name,package", [("cortex-m55", "qemu-system-arm"), ("riscv32f", "qemu-system-misc")])
def test_missing_emulator_names_the_debian_package(tmp_path, monkeypatch, name, package):
    monkeypatch.setattr(shutil, "which", lambda t: None)
    (tmp_path / "x.elf").write_bytes(b"")
    with pytest.raises(UserError, match=f"Debian package {package}"):
        run_elf(get_core(name), tmp_path / "x.elf", tmp_path)


def test_firmware_hang_times_out_with_clear_error(tmp_path):
    core = tools_or_skip("riscv32")
    elf = _build(tmp_path, core, "int main(void) { for (;;) { __asm volatile(\"nop\"); } }\n")
    with pytest.raises(UserError, match="did not finish within"):
        run_elf(core, elf, tmp_path, timeout=2)


def test_memory_table_formatter():
    from microtrain.report.memory import format_memory

    mem = {"flash_bytes": 2048, "sram_static_bytes": 1024, "sram_bytes": 3072,
           "breakdown": {"arena": 512, "trainable_weights": 256, "other_sram": 256, "heap": 1024, "stack": 1024,
                         "code": 1536, "frozen_weights": 256, "other_flash": 256}}
    text = format_memory(mem, sram_budget=262144)
    assert text.splitlines()[0].startswith("SRAM       3.0 KB") and "of 256 KB budget" in text
    assert "stack (high-water)                   1.0 KB" in text
    assert "flash      2.0 KB" in text


STEP_PROG = r"""
#include <stdint.h>
volatile float in = 1.5f;
#ifdef USE_DOUBLE
__attribute__((noinline)) static float scale(float x) { double d = x; return (float)(d * 1.1); }
#else
__attribute__((noinline)) static float scale(float x) { return x * 1.1f; }
#endif
float mt_train_step(const int8_t *input, int32_t label);
__attribute__((noinline)) float mt_train_step(const int8_t *input, int32_t label)
{ (void)input; (void)label; return scale(in); }
int main(void) { return (int)mt_train_step(0, 0); }
"""


@pytest.mark.parametrize("name,expect", [("cortex-m7", "vmul.f64"), ("cortex-m4", "__aeabi_dmul"),
                                         ("riscv32f", "__muldf3")])
def test_double_precision_on_the_step_path_is_found(tmp_path, name, expect):
    from microtrain.targets.mcu.doubles import double_precision_on_step_path

    core = tools_or_skip(name)
    clean = _build(tmp_path, core, STEP_PROG, name="clean")
    assert double_precision_on_step_path(core, clean) == []
    dirty = _build(tmp_path, core, STEP_PROG, name="dirty", defines={"USE_DOUBLE": "1"})
    found = double_precision_on_step_path(core, dirty)
    assert any(expect in f for f in found), found
