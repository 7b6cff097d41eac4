"""Library output: ``microtrain compile --target lib [--core NAME]`` turns the generated project
into a folder that drops into the user's firmware (docs/integration.md).

Beside the project's sources (``src/``, ``runtime/``; the semihosting driver ``main/`` stays for
``microtrain run``), it writes

    include/microtrain.h     the one public header: init, infer, train step, schedule, flash
                             checkpoint hooks (mt_flash), read/write the trained weights
    src/mt_weights.c         mt_weights_bytes / mt_read_weights / mt_write_weights
    CMakeLists.txt           the static library ``microtrain`` and ``microtrain_example``
    cmake/<core>.cmake       a toolchain file for every core of ``mcu/cores.py``
    boards/                  start-up code and a linker script per core (the QEMU boards), for
                             the example only
    example/main.c           a main loop training on samples from a sensor callback

It builds out of tree with CMake for the host and every core, with -Wall -Wextra -Werror, and
needs no C library function beyond memcpy/memset (tests/test_target_lib.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from microtrain.errors import UserError
from microtrain.targets.mcu import linker, toolchain
from microtrain.targets.mcu.cores import CORES, FAMILIES, ICOUNT_SHIFT, Core

HERE = Path(__file__).parent
PUBLIC_HEADER = "microtrain.h"
PROCESSOR = {"arm": "arm", "riscv": "riscv32"}

WEIGHTS_API = """
/* ---- the trained weights as one byte string (mt_trainable[] back to back, device byte order) ---- */
/* Bytes of all trained tensors. */
uint32_t mt_weights_bytes(void);
/* Copy the trained tensors to dst / load them from src; bytes must be mt_weights_bytes().
 * Return 0, or -1 for a NULL buffer or a wrong size (nothing copied). */
int32_t mt_read_weights(uint8_t *dst, uint32_t bytes);
int32_t mt_write_weights(const uint8_t *src, uint32_t bytes);
"""


def _cmake_list(items) -> str:
    return " ".join(f'"{i}"' for i in items)


def public_header(project: Path) -> str:
    """include/microtrain.h: mt_flash.h and mt_model.h in one file (their include guards kept, so
    the library's own sources may include either) plus the weights API, callable from C++."""
    flash = (project / "runtime" / "include" / "mt_flash.h").read_text()
    model = (project / "include" / "mt_model.h").read_text().replace('#include "mt_flash.h"\n', "")
    return ("/* microtrain.h: the public API of this microtrain library (generated). Include only this\n"
            " * header. The model: mt_init, mt_infer, mt_train_step, mt_set_schedule, mt_set_seed; the\n"
            " * checkpoints: an mt_flash driver (three callbacks) and mt_save_state / mt_restore_state; the\n"
            " * weights: mt_read_weights / mt_write_weights. docs/integration.md of microtrain. */\n"
            "#ifndef MICROTRAIN_H\n#define MICROTRAIN_H\n\n#include <stddef.h>\n#include <stdint.h>\n\n"
            "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
            f"{flash}\n{model}\n{WEIGHTS_API}\n"
            "#ifdef __cplusplus\n}\n#endif\n\n#endif /* MICROTRAIN_H */\n")


def example_link_flags(core: Core) -> list[str]:
    """The family's link flags for the example (CMake passes CMAKE_C_FLAGS to the link too, so the
    compile flags are not repeated; the example prints no float, so no ``-u _printf_float``)."""
    family, flags, skip = FAMILIES[core.family], [], False
    for flag in family.link_flags:
        if skip or flag == "-u":
            skip = not skip
            continue
        if flag not in family.compile_flags:
            flags.append(flag)
    return flags


def toolchain_file(core: Core) -> str:
    family = FAMILIES[core.family]
    defines = {"MT_ICOUNT_SHIFT": ICOUNT_SHIFT, "MT_TICK_NUM": core.tick_num, "MT_TICK_SHIFT": core.tick_shift}
    values = {"CORE": core.name, "TITLE": core.title, "EXAMPLES": core.examples, "BOARD": core.board,
              "PROCESSOR": PROCESSOR[core.family], "COMPILER": core.compiler,
              "CFLAGS": " ".join([*core.cflags, *family.compile_flags]),
              "FAMILY": core.family, "BOARD_DEFINES": _cmake_list(f"{k}={v}" for k, v in defines.items()),
              "LINK_FLAGS": _cmake_list(example_link_flags(core)), "LIBS": _cmake_list(family.libs)}
    text = (HERE / "toolchain.cmake.in").read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    return text


def write_library(project: str | Path, *, flash: int | None = None, sram: int | None = None) -> dict:
    """Add the library files to the generated project folder ``project``; returns what was written.
    ``flash`` / ``sram``: the budgets of the example's linker scripts (default 1 MB / 256 KB), on
    every core whose board can map them."""
    project = Path(project)
    if not (project / "include" / "mt_model.h").exists():
        raise UserError(f"{project} is not a generated microtrain project (no include/mt_model.h)")
    flash = flash or linker.DEFAULT_FLASH
    sram = sram or linker.DEFAULT_SRAM
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(project.resolve().name)) or "model"
    (project / "include" / PUBLIC_HEADER).write_text(public_header(project))
    shutil.copyfile(HERE / "mt_weights.c", project / "src" / "mt_weights.c")
    (project / "example").mkdir(exist_ok=True)
    shutil.copyfile(HERE / "example_main.c", project / "example" / "main.c")
    cmake = (HERE / "CMakeLists.txt.in").read_text().replace("@MODEL@", name).replace("@IDENT@", name)
    (project / "CMakeLists.txt").write_text(cmake)
    boards, tools = project / "boards", project / "cmake"
    boards.mkdir(exist_ok=True)
    tools.mkdir(exist_ok=True)
    for src in toolchain.STARTUP_FILES:
        shutil.copyfile(src, boards / src.name)
    cores = []
    for core in CORES.values():
        try:
            script = linker.render_linker_script(core, flash, sram)
        except UserError:
            continue  # this core's board cannot map the budgets: no example for it
        (boards / f"{core.name}.ld").write_text(script)
        (tools / f"{core.name}.cmake").write_text(toolchain_file(core))
        cores.append(core.name)
    return {"dir": str(project), "header": str(project / "include" / PUBLIC_HEADER),
            "cmake": str(project / "CMakeLists.txt"), "toolchains": cores,
            "example": str(project / "example" / "main.c")}
