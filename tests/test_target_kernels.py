"""The runtime kernels give the same bytes on the emulated Cortex-M7 as on the host:
int8 forward, fp32 backward (no FMA contraction on either side) and the update.

The Cortex-M7 build compiles the DSP path of the int8 dot products (mt_nn.h, SXTAB16/SMLAD
under __ARM_FEATURE_DSP), the host build the portable loops: the harness checks each path
against a naive loop / direct convolution on random shapes, and the two output files must
still be identical."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

from microtrain.targets import cortex_m7
from microtrain.targets.cortex_m7.toolchain import BuildConfig

pytestmark = [pytest.mark.target, pytest.mark.host_c]

RUNTIME = Path(__file__).resolve().parents[1] / "microtrain" / "runtime"
HARNESS = Path(__file__).with_name("test_target_kernels.c")


def test_runtime_kernels_bit_exact_host_vs_cortex_m7(tmp_path):
    require_tool("gcc", "gcc")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    sources = sorted((RUNTIME / "src").rglob("*.c"))
    if not sources:
        pytest.skip("the C runtime (microtrain/runtime/src) is not there yet")
    include = RUNTIME / "include"

    host_dir, target_dir = tmp_path / "host", tmp_path / "target"
    host_dir.mkdir()
    exe = host_dir / "kernels"
    cmd = ["gcc", "-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", f"-I{include}", str(HARNESS),
           *map(str, sources), "-lm", "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True)
    host = subprocess.run([str(exe)], cwd=host_dir, capture_output=True, text=True, timeout=60)
    assert host.returncode == 0, host.stdout + host.stderr
    assert "dsp path 0" in host.stdout  # the host runs the portable loops
    assert "random mismatches 0" in host.stdout, host.stdout

    elf = cortex_m7.build_elf([HARNESS, *sources], [include], target_dir / "build", BuildConfig(), name="kernels")
    run = cortex_m7.run_elf(elf, target_dir, timeout=120)
    assert run.returncode == 0, run.stdout
    assert "kernels done failures 0" in run.stdout
    assert "dsp path 1" in run.stdout, "the Cortex-M7 build did not take the __ARM_FEATURE_DSP path of mt_nn.h"
    assert "random mismatches 0" in run.stdout, run.stdout

    a, b = (host_dir / "out.bin").read_bytes(), (target_dir / "out.bin").read_bytes()
    assert len(a) == len(b) and len(a) > 5000
    if a != b:
        first = next(i for i in range(len(a)) if a[i] != b[i])
        pytest.fail(f"host and Cortex-M7 outputs differ first at byte {first}: host {a[first]} target {b[first]}")
