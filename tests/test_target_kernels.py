"""The runtime kernels give the same bytes on every emulated core as on the host: int8
forward, fp32 backward (no FMA contraction on either side, soft float on the cores without
an FPU) and the update.

The builds for cores with the DSP extension (Cortex-M4/M7/M33) compile the DSP path of the int8
dot products (mt_nn.h, SXTAB16/SMLAD under __ARM_FEATURE_DSP), the Cortex-M55 their Helium path
(mt_nn_mve.h, VMLADAVA under __ARM_FEATURE_MVE) where it has one and the DSP path elsewhere, the
others (host, Cortex-M3, RISC-V) the portable loops: the harness checks each path against a naive loop /
direct convolution on random shapes, and the output files must still be identical."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import require_tool
from test_target_mcu import tools_or_skip

from microtrain.targets.mcu import CORES, BuildConfig, build_elf, run_elf

pytestmark = [pytest.mark.target, pytest.mark.host_c]

RUNTIME = Path(__file__).resolve().parents[1] / "microtrain" / "runtime"
HARNESS = Path(__file__).with_name("test_target_kernels.c")


@pytest.mark.parametrize("name", list(CORES))
def test_runtime_kernels_bit_exact_host_vs_each_core(tmp_path, name):
    require_tool("gcc", "gcc")
    core = tools_or_skip(name)
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
    assert "dsp path 0" in host.stdout and "mve path 0" in host.stdout  # the host runs the portable loops
    assert "random mismatches 0" in host.stdout, host.stdout

    elf = build_elf(core, [HARNESS, *sources], [include], target_dir / "build", BuildConfig(), name="kernels")
    run = run_elf(core, elf, target_dir, timeout=120)
    assert run.returncode == 0, run.stdout
    assert "kernels done failures 0" in run.stdout
    dsp = int("dsp" in core.features)
    assert f"dsp path {dsp}" in run.stdout, f"the {name} build did not take the expected path of mt_nn.h (dsp {dsp})"
    mve = int("mve" in core.features)  # the Cortex-M55: the Helium dot products of mt_nn_mve.h
    assert f"mve path {mve}" in run.stdout, f"the {name} build did not take the expected path of mt_nn.h (mve {mve})"
    assert "random mismatches 0" in run.stdout, run.stdout

    a, b = (host_dir / "out.bin").read_bytes(), (target_dir / "out.bin").read_bytes()
    assert len(a) == len(b) and len(a) > 5000
    if a != b:
        first = next(i for i in range(len(a)) if a[i] != b[i])
        pytest.fail(f"host and {name} outputs differ first at byte {first}: host {a[first]} target {b[first]}")
