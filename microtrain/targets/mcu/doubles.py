"""No double-precision arithmetic on the training step's path, checked on the linked ELF.

A single-precision FPU (Cortex-M4/M33, RV32F) or none (Cortex-M3, RV32IMC) would emulate
doubles in software, tens of instructions each; the runtime and the generated code are
float32 by contract (and compiled with -Wdouble-promotion for the targets). This reads the
disassembly (``<prefix>objdump -d``), builds the call graph from the symbols the
control-transfer instructions name (direct calls, tail calls, branches), and lists what the functions
reachable from ``mt_train_step`` / ``mt_infer`` do in double precision: calls of the
soft-double routines (``__aeabi_d*``, ``__aeabi_f2d``, libgcc's ``__*df*``) and
double-precision FPU instructions (Arm ``*.f64``, RISC-V ``f*.d``). The driver's printf of a
loss may use doubles: it is not on the path.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from microtrain.targets.mcu.cores import Core
from microtrain.targets.mcu.toolchain import require

ROOTS = ("mt_train_step", "mt_infer")
_FUNC_RE = re.compile(r"^[0-9a-f]+ <([^>]+)>:$")
# The symbol a control-transfer instruction names (calls, tail calls, branches): the call graph
# of direct calls. (Other instructions' <symbol> comments are address guesses, not edges.)
_CALL_RE = re.compile(r"<([^>+]+)(?:\+0x[0-9a-f]+)?>")
_CONTROL = {"arm": re.compile(r"^(b|bl|blx|b[a-z]{2}|cbn?z)(\.[nw])?$"),
            "riscv": re.compile(r"^(c\.)?(jal|j|jalr|jr|call|tail|b[a-z]{1,4})$")}
_SOFT_DOUBLE_RE = re.compile(r"^(__aeabi_(d\w+|[fil]2d|ui2d|ul2d)|__\w*df[23]|__\w*dfsf2|__\w*sfdf2|__float\w*df|"
                             r"__fix\w*df\w*|__\w+df)$")
_MNEMONIC_RE = re.compile(r"^\s*[0-9a-f]+:\s+(\S+)")
# double-precision FPU instructions: Arm VFP with an .f64 type (vadd.f64, vcvt.f64.f32, ...),
# RISC-V D (fadd.d, fcvt.d.s, fcvt.s.d, ...)
_HARD_DOUBLE = {"arm": re.compile(r"^v\w*(\.\w+)*\.f64(\.\w+)?$"), "riscv": re.compile(r"^f\w+\.d(\.\w+)?$")}


def objdump_tool(core: Core) -> str:
    return core.compiler.replace("gcc", "objdump")


def _disassemble(core: Core, elf: Path) -> dict[str, list[str]]:
    require(core.compiler)
    out = subprocess.run([objdump_tool(core), "-d", "--no-show-raw-insn", str(elf)],
                         capture_output=True, text=True, check=True).stdout
    funcs: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        m = _FUNC_RE.match(line)
        if m:
            current = m.group(1)
            funcs.setdefault(current, [])
        elif current is not None and line.strip():
            funcs[current].append(line)
    return funcs


def double_precision_on_step_path(core: Core, elf: Path, roots: tuple[str, ...] = ROOTS) -> list[str]:
    """'function: what' for every double-precision operation reachable from ``roots`` (empty if none)."""
    funcs = _disassemble(core, elf)
    starts = [r for r in roots if r in funcs] + [f"__real_{r}" for r in roots if f"__real_{r}" in funcs]
    if not starts:
        raise ValueError(f"{elf} defines none of {', '.join(roots)}")
    seen, todo, found = set(), list(starts), []
    hard = _HARD_DOUBLE[core.family]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if _SOFT_DOUBLE_RE.match(name):
            found.append(f"{name}: soft-double routine")
            continue
        control = _CONTROL[core.family]
        for line in funcs.get(name, []):
            m = _MNEMONIC_RE.match(line)
            if not m:
                continue
            if hard.match(m.group(1)):
                found.append(f"{name}: {m.group(1)}")
            if control.match(m.group(1)):
                todo += [c for c in _CALL_RE.findall(line) if c != name and c not in seen]
    return sorted(set(found))
