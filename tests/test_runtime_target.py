"""The kernels compute the same bits on Cortex-M7 as on the host.

tests/runtime_harness/kernel_suite.c runs every kernel on fixed data and writes the results;
it is built with gcc and run natively, and built with arm-none-eabi-gcc (the target helper's
toolchain, start-up and linker script) and run on QEMU mps2-an500 through semihosting. The
two result files must be byte-identical (int8 kernels, requantization, fp32 gradients in
their documented order, the stochastic/nearest updates, the loss with its libm-free
exp/log, the learning-rate schedule). The host results themselves are
checked against the reference interpreter and torch by the other test_runtime_* files."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from microtrain.runtime import cbind

pytestmark = pytest.mark.target

HARNESS = cbind.RUNTIME_DIR.parents[1] / "tests" / "runtime_harness" / "kernel_suite.c"


def _sections(stdout: str) -> list[tuple[str, int, int]]:
    return [(m[1], int(m[2]), int(m[3])) for m in re.finditer(r"^section (\S+) (\d+) (\d+)$", stdout, re.M)]


def _first_mismatch(host: bytes, target: bytes, sections: list[tuple[str, int, int]]) -> str:
    for name, off, n in sections:
        a, b = host[off:off + n], target[off:off + n]
        if a != b:
            i = next(k for k in range(n) if a[k] != b[k])
            return (f"section {name}: first differing byte {i} (file offset {off + i}): "
                    f"host {a[i]:#04x}, target {b[i]:#04x}")
    return "files differ in length"


def test_kernels_bit_identical_on_cortex_m7(tmp_path):
    for tool, pkg in [("gcc", "gcc"), ("arm-none-eabi-gcc", "gcc-arm-none-eabi"),
                      ("qemu-system-arm", "qemu-system-arm")]:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian package {pkg})")
    from microtrain.targets.cortex_m7 import BuildConfig, build_elf, run_elf

    sources = [HARNESS, *cbind.source_files()]
    host_dir, target_dir = tmp_path / "host", tmp_path / "target"
    host_dir.mkdir()
    exe = host_dir / "kernel_suite"
    cmd = ["gcc", *cbind.CFLAGS, "-O2", f"-I{cbind.INCLUDE_DIR}", *map(str, sources), "-lm", "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    host = subprocess.run([str(exe)], capture_output=True, text=True, cwd=host_dir)
    assert host.returncode == 0 and "done failures 0" in host.stdout, host.stdout[-2000:]

    elf = build_elf(sources, [cbind.INCLUDE_DIR], target_dir, BuildConfig(defines={"MT_COUNT_INSTRUCTIONS": "1"}),
                    name="kernel_suite")
    run = run_elf(elf, target_dir / "run", timeout=120)
    assert run.returncode == 0 and "done failures 0" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]

    sections = _sections(host.stdout)
    assert sections == _sections(run.stdout)
    assert len(sections) >= 30
    host_bytes = (host_dir / "mt_kernels_out.bin").read_bytes()
    target_bytes = (target_dir / "run" / "mt_kernels_out.bin").read_bytes()
    assert host_bytes == target_bytes, _first_mismatch(host_bytes, target_bytes, sections)
    # the per-kernel Cortex-M7 instruction counts, for the record (-s shows them)
    print("\n".join(line for line in run.stdout.splitlines() if line.startswith("cost ")))
