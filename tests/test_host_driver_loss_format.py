"""The driver prints the loss through integer arithmetic (``main_template.FIXED6_C``, no dtoa on
the heap): the same text as ``%.6f`` for every float below 2^31, ties included, checked against
Python's correctly rounded formatting and the host libc's printf; ``lr_bits`` gives the exact lr."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import require_tool

from microtrain.codegen.main_template import FIXED6_C

pytestmark = pytest.mark.host_c

HARNESS = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
""" + FIXED6_C + r"""
int main(void)
{
    char line[32];
    while (fgets(line, sizeof line, stdin) != NULL) {
        uint32_t b = (uint32_t)strtoul(line, NULL, 16);
        float x;
        int neg;
        unsigned long ip, fp;
        memcpy(&x, &b, sizeof x);
        if (mt_fixed6(x, &neg, &ip, &fp)) printf("%s%lu.%06lu %.6f\n", neg ? "-" : "", ip, fp, (double)x);
        else printf("fallback %.6f\n", (double)x);
    }
    return 0;
}
"""


def _floats() -> np.ndarray:
    rng = np.random.default_rng(0)
    parts = [
        rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32),  # every exponent
        rng.uniform(0, 20, 20000).astype(np.float32),                                      # losses
        (np.arange(0, 4096, dtype=np.float32) / 128).astype(np.float32),  # k/128: exact halfway cases (0.0078125)
        np.float32(2.0) ** -np.arange(1, 40, dtype=np.float32),                             # 0.0078125 -> tie
        np.array([0.0, -0.0, 0.9999995, 1.9999995, 9.9999995, 0.0000005, -0.0000005, 2**31 - 128, 2**31,
                  -(2**31 - 128), 1e-45, -1e-45, 3.4e38, np.inf, -np.inf, np.nan], dtype=np.float32),
    ]
    x = np.concatenate(parts).astype(np.float32)
    near = np.nextafter(x[np.isfinite(x)], np.float32(np.inf)).astype(np.float32)  # around every value
    return np.concatenate([x, near, np.nextafter(near, np.float32(-np.inf)).astype(np.float32)])


def test_fixed6_prints_what_printf_prints(tmp_path):
    require_tool("gcc", "gcc")
    src, exe = tmp_path / "fixed6.c", tmp_path / "fixed6"
    src.write_text(HARNESS)
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", str(src), "-o", str(exe)], check=True)
    x = _floats()
    bits = x.view(np.uint32)
    out = subprocess.run([str(exe)], input="".join(f"{b:08x}\n" for b in bits), capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert len(out) == len(x)
    fallbacks = ties = 0
    for v, b, line in zip(x.tolist(), bits.tolist(), out, strict=True):
        want = f"{v:.6f}"  # Python: correctly rounded, ties to even, as glibc and newlib
        got = line.split()
        if got[0] == "fallback":
            assert not (abs(v) < 2**31), f"{b:08x} ({v!r}) fell back to printf"
            fallbacks += 1
            continue
        assert abs(v) < 2**31
        assert got == [want, want], f"{b:08x} ({v!r}): integer {got[0]}, libc {got[1]}, Python {want}"
        ties += (np.float64(v) * 10**6 * 2) % 2 == 1
    assert fallbacks > 0 and ties > 0  # both paths and exact halfway cases were exercised


def test_driver_files_write_lr_bits(tmp_path):
    from microtrain.codegen.driver_files import write_driver_files

    x = np.zeros((2, 4), np.int8)
    y = np.zeros(2, np.int32)
    work = write_driver_files(tmp_path, x, y, steps=1, lr=0.1)
    cfg = dict(line.split() for line in (work / "mt_config.txt").read_text().splitlines())
    assert int(cfg["lr_bits"], 16) == int(np.float32(0.1).view(np.uint32))
    assert np.float32(float(cfg["lr"])) == np.float32(0.1)
