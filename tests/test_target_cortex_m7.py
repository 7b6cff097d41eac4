"""Cortex-M7 target infrastructure on small hand-written C programs: build at the budgets,
run under QEMU with semihosting, memory truth from the ELF, stack high-water, instruction
counts. Needs arm-none-eabi-gcc + qemu-system-arm (installed by `make test`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import require_tool

from microtrain.cli.common import UserError
from microtrain.targets import cortex_m7
from microtrain.targets.cortex_m7 import linker
from microtrain.targets.cortex_m7.toolchain import BuildConfig

pytestmark = pytest.mark.target


@pytest.fixture(autouse=True)
def _tools():
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")


def _build(tmp_path: Path, code: str, name: str = "prog", **cfg) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text(code)
    return cortex_m7.build_elf([src], [], tmp_path / f"build_{name}", BuildConfig(**cfg), name=name)


HELLO = r"""
#include <stdio.h>
#include <string.h>
int main(void) {
    float x = 1.5f;
    for (int i = 0; i < 10; i++) x *= 1.25f;          /* FPU must be on */
    printf("hello %.4f\n", (double)x);
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


def test_hello_semihosting_files_and_exit_code(tmp_path):
    elf = _build(tmp_path, HELLO)
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.txt").write_bytes(b"from host")
    run = cortex_m7.run_elf(elf, work, timeout=60)
    assert run.returncode == 7
    assert f"hello {1.5 * 1.25 ** 10:.4f}" in run.stdout
    assert "read 9 [from host]" in run.stdout
    assert (work / "out.bin").read_bytes() == b"ABCD"
    # The start-up code reports its measurements after main returns.
    assert run.stack_high_water is not None and 64 < run.stack_high_water < 4096
    assert run.heap_used is not None and run.heap_used > 0  # newlib stdio buffers
    assert run.instructions_total is not None and run.instructions_total > 1000


def test_over_budget_sram_fails_at_link_time_with_the_culprit(tmp_path):
    code = "#include <stdint.h>\nint8_t mt_arena[300000];\n" \
           "int main(void) { mt_arena[7] = 1; return mt_arena[7]; }\n"
    with pytest.raises(UserError) as e:
        _build(tmp_path, code)
    msg = str(e.value)
    assert "SRAM overflowed by" in msg
    by = int(msg.split("SRAM overflowed by ")[1].split()[0])
    # 300000 bytes of arena + the heap/stack reserve + a little libc data, minus 256 KB.
    reserve = linker.DEFAULT_MIN_HEAP + linker.DEFAULT_MIN_STACK
    assert 300000 + reserve - 262144 <= by <= 300000 + reserve - 262144 + 4096
    assert "mt_arena" in msg and "300000 bytes" in msg and "--sram" in msg
    # The same program fits a larger budget.
    assert _build(tmp_path, code, name="fits", sram=linker.parse_size("512KB")).exists()


def test_over_budget_flash_names_the_constant(tmp_path):
    code = "#include <stdint.h>\nconst int8_t mt_frozen_big[1200000] = {1, 2, 3};\nvolatile int k = 2;\n" \
           "int main(void) { return mt_frozen_big[k]; }\n"
    with pytest.raises(UserError) as e:
        _build(tmp_path, code)
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


def test_elf_memory_report_kinds(tmp_path):
    elf = _build(tmp_path, MEMORY_PROG)
    rep = cortex_m7.memory_report(elf)
    assert rep.breakdown["arena"] == 12345
    assert rep.breakdown["trainable_weights"] == 1000
    assert rep.breakdown["frozen_weights"] == 5000
    assert rep.sram_static_bytes == rep.sections[".data"] + rep.sections[".bss"]
    assert rep.sections[".bss"] >= 12345 and rep.sections[".data"] >= 1000
    assert rep.flash_bytes == sum(rep.sections[s] for s in rep.sections if s != ".bss")
    assert rep.flash_bytes >= 5000 + 1000 + rep.sections[".text"]
    run = cortex_m7.run_elf(elf, tmp_path, timeout=60)
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


def test_stack_high_water_grows_by_the_local_array(tmp_path):
    marks = []
    for nbytes in (4, 8192):
        elf = _build(tmp_path, STACK_PROG, name=f"stack{nbytes}", defines={"LOCAL_BYTES": str(nbytes)},
                     min_stack=16384)
        run = cortex_m7.run_elf(elf, tmp_path, timeout=60)
        assert run.returncode == 0
        marks.append(run.stack_high_water)
    # Small program: only start-up and libc frames. With the array: the array plus the few
    # frames above it (Reset_Handler -> main -> use_stack), a few hundred bytes at most.
    assert marks[0] < 512, marks
    assert 8192 <= marks[1] <= 8192 + 256, marks


COUNT_PROG = r"""
#include <stdint.h>
#include <stdio.h>
extern uint64_t mt_target_instructions(void);
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


def test_instruction_count_is_deterministic_and_linear(tmp_path):
    elf = _build(tmp_path, COUNT_PROG)
    runs = [cortex_m7.run_elf(elf, tmp_path, timeout=60) for _ in range(2)]
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].instructions_total == runs[1].instructions_total
    counts = [int(line.split()[-1]) for line in runs[0].stdout.splitlines() if line.startswith("n ")]
    # Each loop iteration is the same few instructions: equal differences, to the instruction.
    assert counts[1] - counts[0] == counts[2] - counts[1]
    per_iter = (counts[1] - counts[0]) / 1000
    assert per_iter == int(per_iter) and 3 <= per_iter <= 8


def test_missing_toolchain_names_the_debian_package(tmp_path, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t: None if t == "arm-none-eabi-gcc" else real_which(t))
    with pytest.raises(UserError, match="gcc-arm-none-eabi"):
        _build(tmp_path, HELLO)
    monkeypatch.setattr(shutil, "which", lambda t: None)
    with pytest.raises(UserError, match="Debian package qemu-system-arm"):
        cortex_m7.run_elf(tmp_path / "x.elf", tmp_path)


def test_firmware_hang_times_out_with_clear_error(tmp_path):
    elf = _build(tmp_path, "int main(void) { for (;;) { __asm volatile(\"nop\"); } }\n")
    with pytest.raises(UserError, match="did not finish within"):
        cortex_m7.run_elf(elf, tmp_path, timeout=2)


@pytest.mark.parametrize("text,expected", [("256KB", 262144), ("1MB", 1048576), ("300000", 300000),
                                           ("64k", 65536), ("1.5MB", 1572864), (4096, 4096), ("2 MiB", 2097152)])
def test_parse_size(text, expected):
    assert linker.parse_size(text) == expected


def test_parse_size_and_budget_errors():
    with pytest.raises(UserError, match="cannot read the size"):
        linker.parse_size("lots")
    with pytest.raises(UserError, match="16MB"):
        linker.render_linker_script(linker.MB, 32 * linker.MB)
    # Budgets above the 4 MB SSRAM block move SRAM to the 16 MB PSRAM of the board.
    assert "0x60000000" in linker.render_linker_script(linker.MB, 6 * linker.MB)
    assert "0x20000000" in linker.render_linker_script(linker.MB, 256 * linker.KB)


def test_memory_table_formatter():
    from microtrain.report.memory import format_memory

    mem = {"flash_bytes": 2048, "sram_static_bytes": 1024, "sram_bytes": 3072,
           "breakdown": {"arena": 512, "trainable_weights": 256, "other_sram": 256, "heap": 1024, "stack": 1024,
                         "code": 1536, "frozen_weights": 256, "other_flash": 256}}
    text = format_memory(mem, sram_budget=262144)
    assert text.splitlines()[0].startswith("SRAM       3.0 KB") and "of 256 KB budget" in text
    assert "stack (high-water)                   1.0 KB" in text
    assert "flash      2.0 KB" in text


def test_hard_fault_is_reported(tmp_path):
    elf = _build(tmp_path, "int main(void) { return *(volatile int *)0x90000000; }\n")
    with pytest.raises(UserError, match="crashed on the emulated Cortex-M7"):
        cortex_m7.run_elf(elf, tmp_path, timeout=30)
