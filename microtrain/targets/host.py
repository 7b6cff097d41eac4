"""Host target: build a generated project with the host gcc and run its driver.

Flags as every build of the runtime (CONTRACTS.md): ``-std=c99 -Wall -Wextra -Werror
-ffp-contract=off``, optimised with ``HOST_OPT``, plus ``-march=x86-64-v3`` where the CPU has it
(``host_arch_flags``). ``run`` executes ``main/mt_main.c`` in a work directory holding
``mt_config.txt`` and the ``mt_*.bin`` files and parses its output.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import re
import shutil
import subprocess
from pathlib import Path

from microtrain.targets.process import run_program

NAME = "host"
CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")
HOST_OPT = "-O3"
"""-O3 vectorises the fp32 backward loops: 18 % fewer instructions per MbV2 step than -O2, with bit-identical
losses and weights (no -ffast-math, no contraction, so no float reassociation; benchmarks/host_profile.py).
On x86-64-v3 CPUs the build adds ``host_arch_flags()`` (AVX2: the vector kernels of MT_NN_VEC)."""
X86_64_V3_CPU_FLAGS = frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave", "cx16",
                                  "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"})
"""The /proc/cpuinfo flags of the x86-64-v3 level (AVX2, FMA, BMI1/2, F16C, LZCNT (abm), MOVBE, and v2's)."""


@functools.cache
def host_arch_flags() -> tuple[str, ...]:
    """``("-march=x86-64-v3",)`` when this machine is x86-64 with every flag of that level, else ``()``.

    With it, mt_nn.h sets MT_NN_VEC: the int8 1x1 and depthwise kernels run their AVX2 paths
    (runtime/include/mt_nn_*vec.h), and -O3 vectorises the fp32 loops 8 wide. The float results do
    not change: -ffp-contract=off keeps FMA out (the level has it), and vector code only runs
    independent elements side by side. ``build(..., defines=("MT_NN_NO_VEC",))`` builds the portable
    kernels with the same flags; ``build(..., arch=())`` leaves the architecture at gcc's default."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    return ("-march=x86-64-v3",) if has_x86_64_v3(text) else ()


def has_x86_64_v3(cpuinfo: str) -> bool:
    """Whether the first ``flags`` line of a /proc/cpuinfo text lists every flag of X86_64_V3_CPU_FLAGS."""
    flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
    return X86_64_V3_CPU_FLAGS <= set(flags)


_STEP_RE = re.compile(r"^step (\d+) loss (\S+) bits ([0-9a-fA-F]{8})$", re.M)
_EVAL_RE = re.compile(r"^eval correct (\d+) total (\d+)$", re.M)
_ARENA_RE = re.compile(r"^arena high_water (\d+) size (\d+)$", re.M)


class BuildError(RuntimeError):
    """gcc rejected the generated project; the message holds its diagnostics."""


@dataclasses.dataclass
class RunResult:
    returncode: int
    stdout: str
    losses: list[float] = dataclasses.field(default_factory=list)
    loss_bits: list[int] = dataclasses.field(default_factory=list)
    eval_correct: int | None = None
    eval_total: int | None = None
    weights_path: Path | None = None
    arena_high_water: int | None = None

    def to_dict(self) -> dict:
        return {"target": NAME, "returncode": self.returncode, "losses": self.losses,
                "loss_bits": [f"{b:08x}" for b in self.loss_bits], "eval_correct": self.eval_correct,
                "eval_total": self.eval_total, "weights": str(self.weights_path) if self.weights_path else None}


def sources(project_dir: Path) -> tuple[list[Path], list[Path]]:
    project_dir = Path(project_dir)
    if not (project_dir / "main" / "mt_main.c").exists():
        raise FileNotFoundError(f"{project_dir} is not a generated microtrain project (no main/mt_main.c); "
                                "create one with `microtrain compile MODEL --scheme ... --out DIR`")
    srcs = sorted(p for sub in ("src", "runtime", "main") for p in (project_dir / sub).rglob("*.c"))
    incs = [project_dir / "include", project_dir / "runtime" / "include"]
    return srcs, incs


def build(project_dir: str | Path, cc: str = "gcc", opt: str = HOST_OPT, defines: tuple[str, ...] = (),
          name: str = "mt_main", extra_flags: tuple[str, ...] = (), arch: tuple[str, ...] | None = None) -> Path:
    """Compile and link the project into ``DIR/build/host/<name>``; raises BuildError with gcc's output.

    arch: the -march flags, by default ``host_arch_flags()``."""
    project_dir = Path(project_dir)
    if shutil.which(cc) is None:
        raise BuildError(f"C compiler {cc!r} not found; install gcc")
    srcs, incs = sources(project_dir)
    out = project_dir / "build" / "host" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    arch = host_arch_flags() if arch is None else arch
    cmd = [cc, *CFLAGS, opt, *arch, *extra_flags, *(f"-D{d}" for d in defines), *(f"-I{i}" for i in incs),
           *map(str, srcs), "-o", str(out), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"gcc failed on {project_dir}:\n{proc.stderr[-4000:]}")
    return out


def parse_output(stdout: str, returncode: int, workdir: Path) -> RunResult:
    res = RunResult(returncode, stdout)
    for _i, loss, bits in _STEP_RE.findall(stdout):
        res.losses.append(float(loss))
        res.loss_bits.append(int(bits, 16))
    m = _EVAL_RE.search(stdout)
    if m:
        res.eval_correct, res.eval_total = int(m.group(1)), int(m.group(2))
    m = _ARENA_RE.search(stdout)
    if m:
        res.arena_high_water = int(m.group(1))
    weights = Path(workdir) / "mt_weights.bin"
    res.weights_path = weights if weights.exists() else None
    return res


def run(project_dir: str | Path, workdir: str | Path, **opts) -> RunResult:
    """Build (unless opts['exe'] is given) and run the driver in ``workdir``.

    opts: exe, cc, opt, defines, timeout (s), wrapper (a command list run before the
    executable, e.g. valgrind), on_line (called with each output line as it is printed).
    """
    exe = Path(opts["exe"]) if opts.get("exe") else build(project_dir, cc=opts.get("cc", "gcc"),
                                                          opt=opts.get("opt", HOST_OPT),
                                                          defines=tuple(opts.get("defines", ())))
    cmd = [*opts.get("wrapper", ()), str(exe.resolve())]
    proc = run_program(cmd, workdir, opts.get("timeout", 600), opts.get("on_line"))
    if proc.returncode != 0:
        raise RuntimeError(f"the generated program exited with code {proc.returncode}:\n"
                           f"{(proc.stdout + proc.stderr)[-2000:]}")
    return parse_output(proc.stdout, proc.returncode, Path(workdir))
