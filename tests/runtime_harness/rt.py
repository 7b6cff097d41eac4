"""Build the runtime once per test session and call its kernels with numpy arrays.

``runtime(tmp_path_factory)`` compiles ``microtrain/runtime`` with gcc into a pytest temp
dir (cached for the session) and returns the ctypes library. ``ptr`` passes numpy arrays
(which the caller must keep alive during the call); ``assert_equal_first`` /
``assert_close_first`` fail with the first mismatching index and the actual and expected
values, as CMSIS-NN's tests do.
"""

from __future__ import annotations

import ctypes
import functools
import shutil
from pathlib import Path

import numpy as np
import pytest

from microtrain.runtime import cbind

_CTYPES = {np.int8: ctypes.c_int8, np.uint8: ctypes.c_uint8, np.int32: ctypes.c_int32, np.float32: ctypes.c_float}


@functools.cache
def _build(tmp_root: str) -> ctypes.CDLL:
    return cbind.load(cbind.build_shared_library(Path(tmp_root)))


def runtime(tmp_path_factory) -> ctypes.CDLL:
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed (Debian package gcc; `make test` installs it)")
    return _build(str(tmp_path_factory.getbasetemp() / "mt_runtime_build"))


def ptr(arr: np.ndarray | None):
    """A ctypes pointer to a C-contiguous numpy array of a runtime element type (None -> NULL)."""
    if arr is None:
        return None
    assert arr.flags["C_CONTIGUOUS"], "pass contiguous arrays"
    return arr.ctypes.data_as(ctypes.POINTER(_CTYPES[arr.dtype.type]))


def channels(index: np.ndarray | None, count: int, begin: int, end: int) -> cbind.Channels:
    return cbind.Channels(ptr(index), count, begin, end)


def assert_equal_first(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    bad = np.flatnonzero(actual.ravel() != expected.ravel())
    if bad.size:
        i = int(bad[0])
        idx = np.unravel_index(i, actual.shape)
        raise AssertionError(f"{what}: {bad.size} mismatches; first at flat {i} {tuple(int(k) for k in idx)}: "
                             f"actual {actual.ravel()[i]!r}, expected {expected.ravel()[i]!r}")


def assert_close_first(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float, what: str) -> None:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    bad = np.flatnonzero(~(np.abs(actual - expected) <= atol + rtol * np.abs(expected)).ravel())
    if bad.size:
        i = int(bad[0])
        idx = np.unravel_index(i, actual.shape)
        raise AssertionError(f"{what}: {bad.size} elements outside rtol={rtol} atol={atol:.3g}; first at flat {i} "
                             f"{tuple(int(k) for k in idx)}: actual {actual.ravel()[i]!r}, "
                             f"expected {expected.ravel()[i]!r}")
