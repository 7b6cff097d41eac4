"""The host's vector kernels give the bytes of the portable C.

On x86-64 CPUs with the x86-64-v3 level the host target builds with ``-march=x86-64-v3``
(targets/host.py ``host_arch_flags``), so mt_nn.h sets MT_NN_VEC and the int8 1x1 and
depthwise kernels run their AVX2 paths (runtime/include/mt_nn_vec.h, mt_nn_pw_vec.h,
mt_nn_dw_vec.h); ``-DMT_NN_NO_VEC`` builds the portable kernels with the same flags. Checked
here: the kernel harnesses (random shapes against naive loops, and their output files byte for
byte between the two builds), and the zoo models' published schemes trained on both builds:
loss bits, logits and trained weights equal, and equal to the torch simulator's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool, zoo_path_or_skip
from test_target_generated import _data, _logits, _simulate

from microtrain.runtime import cbind
from microtrain.targets import host

pytestmark = [pytest.mark.host_c]

TESTS = Path(__file__).resolve().parent
HARNESSES = {  # harness -> (its output file, the line it prints when every check passed)
    TESTS / "test_target_kernels.c": ("out.bin", "kernels done failures 0"),
    TESTS / "runtime_harness" / "kernel_suite.c": ("mt_kernels_out.bin", "done failures 0"),
}


def test_x86_64_v3_needs_every_flag_of_the_level():
    flags = " ".join(sorted(host.X86_64_V3_CPU_FLAGS))
    assert host.has_x86_64_v3(f"processor\t: 0\nflags\t\t: fpu {flags} avx512f\n")
    assert not host.has_x86_64_v3(f"flags\t\t: {flags.replace('avx2', 'avx')}\n")  # an AVX-only CPU
    assert not host.has_x86_64_v3("processor\t: 0\n")  # no flags line (not x86, or no /proc)


def _arch_or_skip() -> tuple[str, ...]:
    require_tool("gcc", "gcc")
    arch = host.host_arch_flags()
    if not arch:
        pytest.skip("this CPU is not x86-64-v3 (no AVX2): the host build runs the portable kernels only")
    return arch


def _harness_run(harness: Path, work: Path, flags: tuple[str, ...]) -> tuple[str, bytes]:
    work.mkdir(parents=True)
    exe = work / "harness"
    cmd = ["gcc", *cbind.CFLAGS, *flags, f"-I{cbind.INCLUDE_DIR}", str(harness), *map(str, cbind.source_files()),
           "-lm", "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, cwd=work, timeout=300)
    out_name, ok_line = HARNESSES[harness]
    assert run.returncode == 0 and ok_line in run.stdout, run.stdout[-3000:]
    return run.stdout, (work / out_name).read_bytes()


@pytest.mark.parametrize("harness,defines", [(h, ()) for h in HARNESSES] + [
    (TESTS / "test_target_kernels.c", ("-DMT_TEST_RH=40",))],  # rows past the vector depthwise's 16-output groups
    ids=lambda v: v.name if isinstance(v, Path) else " ".join(v))
def test_kernel_harness_vector_build_equals_portable(tmp_path, harness, defines):
    arch = _arch_or_skip()
    vec_out, vec_bytes = _harness_run(harness, tmp_path / "vec", (host.HOST_OPT, *arch, *defines))
    port_out, port_bytes = _harness_run(harness, tmp_path / "portable",
                                        (host.HOST_OPT, *arch, *defines, "-DMT_NN_NO_VEC"))
    if "vec path" in vec_out:  # test_target_kernels.c: which path each build took, random shapes vs naive loops
        assert "vec path 1" in vec_out and "vec path 0" in port_out
        assert "random mismatches 0" in vec_out and "random mismatches 0" in port_out
    assert len(vec_bytes) > 5000 and vec_bytes == port_bytes


@pytest.mark.zoo
@pytest.mark.slow
@pytest.mark.parametrize("model,scheme", [("mbv2-w0.35", "mbv2-w0.35/99kb"), ("proxyless-w0.3", "proxyless-w0.3/98kb"),
                                          ("mcunet-5fps", "mcunet-5fps/99kb")])
def test_zoo_vector_build_equals_portable_and_simulator(tmp_path, model, scheme):
    from microtrain.codegen.driver_files import read_weights, write_driver_files
    from microtrain.codegen.generate_project import generate_project
    from microtrain.compiler.pipeline import CompileOptions, compile_training
    from microtrain.frontend.heads import new_head
    from microtrain.frontend.mcu_zoo import import_zoo_model
    from microtrain.sparse.presets import load_scheme

    arch = _arch_or_skip()
    graph = new_head(import_zoo_model(zoo_path_or_skip(model)), 10)
    plan = load_scheme(scheme, graph)
    out = generate_project(compile_training(graph, plan, CompileOptions()), graph, tmp_path / "proj")
    x, y = _data(graph, 2)
    runs = {}
    for name, defines in (("vec", ("MT_DEBUG_LOGITS",)), ("portable", ("MT_DEBUG_LOGITS", "MT_NN_NO_VEC"))):
        work = write_driver_files(tmp_path / name, x, y, steps=2, lr=0.01, x_test=x, y_test=y, eval_count=2)
        runs[name] = host.run(out, work, exe=host.build(out, defines=defines, name=f"mt_main_{name}", arch=arch))
    vec, port = runs["vec"], runs["portable"]
    assert len(vec.loss_bits) == 2 and vec.loss_bits == port.loss_bits
    assert len(_logits(vec.stdout)) == 2 and _logits(vec.stdout) == _logits(port.stdout)
    assert vec.weights_path.read_bytes() == port.weights_path.read_bytes()
    sim_bits, sim = _simulate(graph, plan, x, y, 2, 0.01)
    assert sim_bits == vec.loss_bits, "the simulator's loss bits differ from the vector build's"
    got = read_weights(out, vec.weights_path)
    assert got
    for name, arr in got.items():
        diff = np.flatnonzero(arr.reshape(-1) != sim.tensors[name].data.reshape(-1))
        assert diff.size == 0, f"{name} differs from the simulator at {diff.size} elements"
