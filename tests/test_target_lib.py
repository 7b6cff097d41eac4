"""`microtrain compile --target lib`: the library folder builds out of tree with CMake for the host
and every core (-Wall -Wextra -Werror), the static library needs no C library function beyond
memcpy/memset, and the example (a sensor callback feeding mt_train_step, a flash checkpoint
saved and restored, the weights read out) prints the same loss bits on QEMU (a Cortex-M and
the RISC-V core) as on the host; an unknown core is a one-line error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from conftest import require_tool

from microtrain.cli import main
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.ir import save_graph
from microtrain.targets.mcu import get_core, run_elf
from microtrain.targets.mcu.cores import CORES, FAMILIES

pytestmark = [pytest.mark.target, pytest.mark.host_c]
NM = {"arm": "arm-none-eabi-nm", "riscv": "riscv64-unknown-elf-nm"}
_STEP = re.compile(r"^step \d+ label \d+ loss_bits [0-9a-f]{8}$", re.M)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A library folder of a small model, copied to a clean folder (no build files of compile)."""
    require_tool("cmake", "cmake")
    tmp = tmp_path_factory.mktemp("lib")
    save_graph(toy_mbnet(2, size=8, in_channels=1, classes=10), tmp / "toy")
    assert main(["compile", str(tmp / "toy.json"), "--scheme", "last-k:3", "--out", str(tmp / "out"),
                 "--target", "lib", "--json"]) == 0
    clean = tmp / "clean"
    shutil.copytree(tmp / "out", clean, ignore=shutil.ignore_patterns("build"))
    return clean


def _cmake_build(library, build, toolchain=None):
    cmd = ["cmake", "-S", str(library), "-B", str(build)]
    if toolchain:
        cmd.append(f"-DCMAKE_TOOLCHAIN_FILE={library / 'cmake' / (toolchain + '.cmake')}")
    for step in (cmd, ["cmake", "--build", str(build), "-j", "2"]):
        proc = subprocess.run(step, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return build


@pytest.fixture(scope="module")
def host_example(library, tmp_path_factory):
    require_tool("gcc", "gcc")
    build = _cmake_build(library, tmp_path_factory.mktemp("build-host"))
    out = subprocess.run([str(build / "microtrain_example")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_library_folder_has_one_public_header_and_every_toolchain(library, host_example):
    header = (library / "include" / "microtrain.h").read_text()
    for api in ("void mt_init(void)", "int mt_infer(", "float mt_train_step(", "int32_t mt_save_state(",
                "int32_t mt_restore_state(", "} mt_flash;", "int32_t mt_read_weights(", "int32_t mt_write_weights(",
                'extern "C"'):
        assert api in header, api
    example = (library / "example" / "main.c").read_text()
    assert '#include "microtrain.h"' in example and "mt_" + "model.h" not in example
    assert {p.stem for p in (library / "cmake").glob("*.cmake")} == set(CORES)
    assert "-Werror" in (library / "CMakeLists.txt").read_text()
    lines = _STEP.findall(host_example)
    assert len(lines) == 12
    assert "save 0" in host_example and re.search(r"^restore 0 checksum ([0-9a-f]{8}) samples 12$", host_example, re.M)
    saved = re.search(r"^weights \d+ bytes checksum ([0-9a-f]{8})$", host_example, re.M).group(1)
    assert re.search(r"^restore 0 checksum ([0-9a-f]{8})", host_example, re.M).group(1) == saved


RUN_ON_QEMU = ("cortex-m55", "riscv32")  # one Cortex-M and the RISC-V target run the example


@pytest.mark.parametrize("core", list(CORES))
def test_library_builds_for_every_core_without_libc(library, host_example, tmp_path, core):
    """Every core: the CMake build with its toolchain file; the library's undefined symbols; on
    RUN_ON_QEMU, the example on the core's board prints exactly the host's output."""
    c = get_core(core)
    require_tool(c.compiler, FAMILIES[c.family].packages[c.compiler])
    build = _cmake_build(library, tmp_path / f"build-{core}", core)
    assert (build / "microtrain_example.elf").exists()
    nm = subprocess.run([NM[c.family], "-g", str(build / "libmicrotrain.a")], capture_output=True, text=True,
                        check=True).stdout
    defined = set(re.findall(r"^[0-9a-f]+ [A-Z] (\S+)$", nm, re.M))
    undefined = set(re.findall(r"^\s+U (\S+)$", nm, re.M)) - defined
    libc = {s for s in undefined if not s.startswith("__")}  # __aeabi_*, __addsf3...: the compiler's runtime
    assert libc <= {"memcpy", "memset"}, f"{core}: the library calls {sorted(libc)}"
    assert {"mt_train_step", "mt_infer", "mt_read_weights", "mt_floorf", "mt_expf"} <= defined
    if core in RUN_ON_QEMU:
        require_tool(c.qemu, FAMILIES[c.family].packages[c.qemu])
        run = run_elf(c, build / "microtrain_example.elf", tmp_path / "run")
        assert run.returncode == 0, run.stdout
        body = run.stdout.split("stack_high_water")[0]
        assert body == host_example  # every loss bit, the accuracy, checkpoint and weights checksums


def test_library_unknown_core_is_a_clear_error(tmp_path, capsys):
    save_graph(toy_mbnet(2, size=8, in_channels=1, classes=10), tmp_path / "toy")
    code = main(["compile", str(tmp_path / "toy.json"), "--scheme", "last-k:3", "--out", str(tmp_path / "o"),
                 "--target", "lib", "--core", "cortex-m99"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown core 'cortex-m99'" in err and "cortex-m4" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_library_with_core_links_it_at_the_budgets(tmp_path, capsys):
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    save_graph(toy_mbnet(2, size=8, in_channels=1, classes=10), tmp_path / "toy")
    assert main(["compile", str(tmp_path / "toy.json"), "--scheme", "last-k:3", "--out", str(tmp_path / "o"),
                 "--target", "lib", "--core", "cortex-m4", "--sram", "128KB", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"]["name"] == "cortex-m4" and doc["target"]["memory"]["sram_budget_bytes"] == 128 * 1024
    assert "LENGTH = 131072" in (tmp_path / "o" / "boards" / "cortex-m4.ld").read_text()
