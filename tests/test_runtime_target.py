"""The kernels compute the same bits on every emulated core as on the host.

tests/runtime_harness/kernel_suite.c runs every kernel on fixed data and writes the results;
it is built with gcc and run natively, and built with each core's cross-compiler (the target
toolchain, start-up and linker script of microtrain/targets/mcu) and run on the core's QEMU
board through semihosting. The result files must be byte-identical (int8 kernels,
requantization, fp32 gradients in their documented order, the stochastic/nearest updates, the
loss with its libm-free exp/log, the learning-rate schedule). The host results themselves are
checked against the reference interpreter and torch by the other test_runtime_* files."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from test_target_mcu import tools_or_skip

from microtrain.runtime import cbind
from microtrain.targets.mcu import CORES, BuildConfig, build_elf, run_elf

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


@pytest.fixture(scope="module")
def host_results(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (Debian package gcc)")
    host_dir = tmp_path_factory.mktemp("kernel_suite_host")
    exe = host_dir / "kernel_suite"
    cmd = ["gcc", *cbind.CFLAGS, "-O2", f"-I{cbind.INCLUDE_DIR}", str(HARNESS), *map(str, cbind.source_files()),
           "-lm", "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    host = subprocess.run([str(exe)], capture_output=True, text=True, cwd=host_dir)
    assert host.returncode == 0 and "done failures 0" in host.stdout, host.stdout[-2000:]
    return host.stdout, (host_dir / "mt_kernels_out.bin").read_bytes()


@pytest.mark.parametrize("name", list(CORES))
def test_kernels_bit_identical_on_each_core(tmp_path, host_results, name):
    core = tools_or_skip(name)
    host_stdout, host_bytes = host_results
    target_dir = tmp_path / "target"
    elf = build_elf(core, [HARNESS, *cbind.source_files()], [cbind.INCLUDE_DIR], target_dir,
                    BuildConfig(defines={"MT_COUNT_INSTRUCTIONS": "1"}), name="kernel_suite")
    run = run_elf(core, elf, target_dir / "run", timeout=120)
    assert run.returncode == 0 and "done failures 0" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]

    sections = _sections(host_stdout)
    assert sections == _sections(run.stdout)
    assert len(sections) >= 30
    target_bytes = (target_dir / "run" / "mt_kernels_out.bin").read_bytes()
    assert host_bytes == target_bytes, _first_mismatch(host_bytes, target_bytes, sections)

    # the per-kernel instruction counts on this core, for the record (-s shows them)
    print(f"\n{name}:\n" + "\n".join(line for line in run.stdout.splitlines() if line.startswith("cost ")))
