"""Compile-time set-up packs of frozen convs, computed by the runtime's own C.

A pack (``mt_conv_pack_s8``, format in ``include/mt_nn_fast.h``) holds what the fast int8
forward would otherwise derive on every call from a conv's frozen weights, bias and
quantization. The code generator stores it in flash and passes it as ``q->pack``. So that the
set-up arithmetic has one home, the words come from the runtime's C function itself, compiled
for the host (int32 words, the same on every host and target) and called through ctypes.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from microtrain.runtime import cbind

PACK_FUNCTIONS = ("mt_conv_pack_s8", "mt_conv_pack_get_size")


@functools.cache
def _library() -> ctypes.CDLL:
    """The pack functions in a small host library, built once per source text (cached on disk)."""
    sources = cbind.sources_for(PACK_FUNCTIONS)
    text = "".join(p.read_text() for p in [*sources, *cbind.HEADERS])
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    final = Path(tempfile.gettempdir()) / f"microtrain-packs-{key}" / "libmt_runtime.so"
    if not final.exists():
        tmp = Path(tempfile.mkdtemp(prefix="microtrain-packs-"))
        lib = cbind.build_shared_library(tmp, sources=sources)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(lib, final)  # atomic: concurrent builders leave one complete library
    return cbind.load(final, PACK_FUNCTIONS)


def conv_pack_size(fields: dict, extended: int = 0) -> int:
    """Bytes of the pack of a conv with these ``mt_conv_params`` fields (0: no pack covers it)."""
    params = cbind.ConvParams(**{k: int(v) for k, v in fields.items()})
    return int(_library().mt_conv_pack_get_size(ctypes.byref(params), int(extended)))


def conv_pack(fields: dict, multiplier, shift, weights, bias, extended: int = 0) -> np.ndarray:
    """The int32 words of ``mt_conv_pack_s8`` for a groups-1 or depthwise conv: ``fields`` its
    ``mt_conv_params`` (twins.conv_params), ``weights`` int8 [out_c][kh][kw][in_c / groups], ``bias``
    int32 [out_c] or None; ``extended``: 1, a 1x1's pack also holds its weight rows as the DSP asm reads them
    (2 bytes per weight); 2, those rows alone (for a trained bias, which the other words depend on)."""
    lib = _library()
    params = cbind.ConvParams(**{k: int(v) for k, v in fields.items()})
    size = lib.mt_conv_pack_get_size(ctypes.byref(params), int(extended))
    if size <= 0:
        raise ValueError(f"no set-up pack for this conv ({fields})")
    mult = np.ascontiguousarray(multiplier, dtype=np.int32)
    sh = np.ascontiguousarray(shift, dtype=np.int32)
    w = np.ascontiguousarray(np.asarray(weights).reshape(-1), dtype=np.int8)
    b = None if bias is None else np.ascontiguousarray(np.asarray(bias).reshape(-1), dtype=np.int32)
    out = np.zeros(size // 4, dtype=np.int32)

    def ptr(a, t):
        return a.ctypes.data_as(ctypes.POINTER(t))

    q = cbind.PerChannelQuant(ptr(mult, ctypes.c_int32), ptr(sh, ctypes.c_int32), None)
    status = lib.mt_conv_pack_s8(ctypes.byref(params), ctypes.byref(q), ptr(w, ctypes.c_int8),
                                 None if b is None else ptr(b, ctypes.c_int32), int(extended), ptr(out, ctypes.c_int32))
    if status != 0:
        raise ValueError(f"mt_conv_pack_s8 failed with status {status} ({fields})")
    return out
