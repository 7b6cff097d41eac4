"""The C runtime builds with the contract's flags on the host and for Cortex-M7, and its
layout (one public function per file, every declaration bound) holds."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from runtime_harness.rt import runtime

from microtrain.runtime import cbind


def declared_functions() -> set[str]:
    text = "".join(re.sub(r"/\*.*?\*/", "", h.read_text(), flags=re.S) for h in cbind.PUBLIC_HEADERS)
    return set(re.findall(r"^\w[\w ]*?\b(mt_\w+)\(", text, flags=re.M))


def test_one_public_function_per_file_named_after_it():
    declared = declared_functions()
    files = {p.stem: p for p in cbind.source_files()}
    assert declared == set(files), f"declared without a file: {declared - set(files)}; " \
                                   f"files not declared: {set(files) - declared}"
    for name, path in files.items():
        assert path.parent.name in {"quant", "forward", "backward", "update", "checkpoint", "math"}, path
        # external definitions only: file-local helpers are `static` (and named mt_nn_*)
        defined = re.findall(r"^(?!static\b)\w[\w ]*?\b(mt_\w+)\(", path.read_text(), flags=re.M)
        assert defined == [name], f"{path.name} defines {defined}, expected exactly [{name}]"
        statics = re.findall(r"^static\b[\w ]*?\b(mt_\w+)\(", path.read_text(), flags=re.M)
        assert all(s.startswith("mt_nn_") for s in statics), f"{path.name}: internal helpers must be mt_nn_*"


def test_every_declaration_has_a_ctypes_prototype():
    assert declared_functions() == set(cbind.PROTOTYPES)


def test_sources_for_follows_calls():
    names = {p.stem for p in cbind.sources_for(["mt_round_update", "mt_conv2d_s8"])}
    assert names == {"mt_round_update", "mt_conv2d_s8", "mt_requantize", "mt_floorf"}
    with pytest.raises(KeyError, match="mt_nope"):
        cbind.kernel_source("mt_nope")


@pytest.mark.host_c
def test_host_build_warning_free(tmp_path_factory):
    # The session build uses -Werror: building at all means no warning.
    lib = runtime(tmp_path_factory)
    assert lib.mt_requantize(100, 1 << 30, 0) == 50
    assert lib.mt_clamp_mask_get_buffer_size(9) == 2


# Library routines a kernel may call: integer and single-precision soft float helpers of the
# compiler's runtime (cores without an FPU), never soft double (__aeabi_d*, __*df*) or 64-bit
# division (__aeabi_ldivmod, __divdi3, ...), and nothing of the C library but memcpy/memset.
_ALLOWED_HELPER = re.compile(r"^(__aeabi_(f\w+|i2f|ui2f|l2f|ul2f|fcmp\w+|lmul|llsl|llsr|lasr|uidiv|idiv|uidivmod"
                             r"|idivmod)|__\w+sf\d|__\w+sf|__float\w*sf|__fix\w*sf\w*|__(mul|ash|lsh)\w*di3|__clz\w+"
                             r"|__ctz\w+|__(u)?(div|mod)si3|__mulsi3|memcpy|memset)$")


@pytest.mark.target
@pytest.mark.parametrize("name", ["cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "riscv32",
                                  "riscv32f"])
def test_runtime_compiles_for_every_core_without_libc_or_double(tmp_path, name):
    from microtrain.targets.mcu import get_core
    from microtrain.targets.mcu.cores import FAMILIES
    from microtrain.targets.mcu.toolchain import STEP_FLAGS

    core = get_core(name)
    cc = core.compiler
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed (Debian package {FAMILIES[core.family].packages[cc]})")
    # One compiler invocation for all files (-c writes <stem>.o into the working directory);
    # -Wdouble-promotion: no float silently widened to double.
    cmd = [cc, *core.cflags, *FAMILIES[core.family].compile_flags, *cbind.CFLAGS, *STEP_FLAGS, "-O2",
           f"-I{cbind.INCLUDE_DIR}", "-c", *map(str, cbind.source_files())]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, f"the runtime does not build for {name}:\n{proc.stderr}"
    assert len(list(tmp_path.glob("*.o"))) == len(cbind.source_files())
    nm = shutil.which(cc.replace("gcc", "nm"))
    assert nm, f"{cc.replace('gcc', 'nm')} missing next to {cc}"
    for obj in tmp_path.glob("*.o"):
        out = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True).stdout
        undefined = {line.split()[-1] for line in out.splitlines() if line.strip()}
        bad = sorted(s for s in undefined if not s.startswith("mt_") and not _ALLOWED_HELPER.match(s))
        assert not bad, f"{obj.name} for {name} needs library routines beyond the contract: {bad}"


@pytest.mark.host_c
def test_harness_sources_compile():
    """The C harnesses (bench_kernels.c for callgrind, kernel_suite.c for the target test)
    keep compiling against the current header."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    harness = cbind.RUNTIME_DIR.parents[1] / "tests" / "runtime_harness"
    for src in sorted(harness.glob("*.c")):
        cmd = ["gcc", *cbind.CFLAGS, "-fsyntax-only", f"-I{cbind.INCLUDE_DIR}", str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{src.name}:\n{proc.stderr}"
