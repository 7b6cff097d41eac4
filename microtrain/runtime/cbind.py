"""Build the C runtime and call it from Python through ctypes.

``build_shared_library(out_dir)`` compiles every kernel with the project's flags into one
host shared library; ``load(path)`` returns the ``ctypes.CDLL`` with every prototype of
``include/mt_runtime.h`` declared, plus the param structs as ``ctypes.Structure`` classes
mirroring the C ones field for field. ``sources_for(functions)`` lists the files a set of
kernels needs (with the kernels they call), for code generators that copy only those.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

RUNTIME_DIR = Path(__file__).resolve().parent
INCLUDE_DIR = RUNTIME_DIR / "include"
SRC_DIR = RUNTIME_DIR / "src"
HEADERS = tuple(sorted(INCLUDE_DIR.glob("*.h")))
"""Every runtime header (a generated project copies them all)."""
PUBLIC_HEADERS = (INCLUDE_DIR / "mt_runtime.h", INCLUDE_DIR / "mt_flash.h")
"""The headers that declare public functions (mt_nn*.h hold internal inline helpers only)."""

# The flags every build of the runtime uses (CONTRACTS.md): C99, warnings are errors, and no
# FMA contraction so the float expressions documented in mt_runtime.h are what runs.
CFLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")


def source_files() -> list[Path]:
    """Every kernel source, sorted (one public function per file, named after it)."""
    return sorted(SRC_DIR.glob("*/*.c"))


def kernel_source(function: str) -> Path:
    """The file defining a public runtime function, e.g. ``mt_conv2d_s8``."""
    for path in source_files():
        if path.stem == function:
            return path
    raise KeyError(f"no runtime source defines {function!r} (expected src/<family>/{function}.c)")


def _with_headers(text: str) -> str:
    """text + every runtime header it includes, transitively: their inline helpers call public
    functions too (mt_requantize). mt_runtime.h only declares them."""
    seen: set[str] = {h.name for h in PUBLIC_HEADERS}
    todo = re.findall(r'#include "(mt_[a-z0-9_]+\.h)"', text)
    while todo:
        name = todo.pop()
        if name in seen or not (INCLUDE_DIR / name).exists():
            continue
        seen.add(name)
        header = (INCLUDE_DIR / name).read_text()
        text += header
        todo += re.findall(r'#include "(mt_[a-z0-9_]+\.h)"', header)
    return text


def sources_for(functions: Iterable[str]) -> list[Path]:
    """The sources of ``functions`` and of every runtime function they call (transitively)."""
    known = {p.stem: p for p in source_files()}
    todo = list(functions)
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = kernel_source(name)
        seen[name] = path
        text = _with_headers(path.read_text())
        for callee in re.findall(r"\b(mt_[a-z0-9_]+)\s*\(", text):
            if callee in known and callee not in seen:
                todo.append(callee)
    return sorted(seen.values())


def build_shared_library(out_dir: Path, cc: str = "gcc", opt: str = "-O2",
                         sources: Iterable[Path] | None = None) -> Path:
    """Compile the whole runtime (or only ``sources``) into ``out_dir/libmt_runtime.so``; raises with gcc's
    output."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / "libmt_runtime.so"
    files = source_files() if sources is None else list(sources)
    cmd = [cc, *CFLAGS, opt, "-fPIC", "-shared", f"-I{INCLUDE_DIR}", *map(str, files), "-o", str(lib), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the runtime failed ({' '.join(cmd)}):\n{proc.stderr}")
    return lib


# --- ctypes mirrors of the param structs (field order = the C declaration order) -----------

def _fields(names: str, ctype: type = ctypes.c_int32) -> list[tuple[str, type]]:
    return [(n, ctype) for n in names.split()]


class ConvParams(ctypes.Structure):
    _fields_ = _fields("in_h in_w in_c out_h out_w out_c kernel_h kernel_w stride_h stride_w "
                       "pad_top pad_left pad_bottom pad_right groups input_zero_point output_zero_point "
                       "act_min act_max")


class FcParams(ctypes.Structure):
    _fields_ = _fields("in_c out_c input_zero_point output_zero_point act_min act_max")


class PerChannelQuant(ctypes.Structure):
    _fields_ = [("multiplier", ctypes.POINTER(ctypes.c_int32)), ("shift", ctypes.POINTER(ctypes.c_int32)),
                ("pack", ctypes.POINTER(ctypes.c_int32))]


class AddParams(ctypes.Structure):
    _fields_ = _fields("size a_zero_point b_zero_point output_zero_point left_shift a_multiplier a_shift "
                       "b_multiplier b_shift output_multiplier output_shift act_min act_max")


class AvgPoolParams(ctypes.Structure):
    _fields_ = _fields("in_h in_w c input_zero_point output_zero_point multiplier shift act_min act_max")


class Channels(ctypes.Structure):
    _fields_ = [("index", ctypes.POINTER(ctypes.c_int32)), ("count", ctypes.c_int32),
                ("begin", ctypes.c_int32), ("end", ctypes.c_int32)]


class Error(ctypes.Structure):
    """mt_grad_codes: a layer's error as integer codes, element i = codes[i] * 2^exponent."""

    _fields_ = [("codes", ctypes.c_void_p), ("bits", ctypes.c_int32), ("exponent", ctypes.c_int32)]


class UpdateParams(ctypes.Structure):
    _fields_ = [("lr", ctypes.c_float), ("rounding", ctypes.c_int32), ("seed", ctypes.c_uint32),
                ("step", ctypes.c_uint32), ("tensor_id", ctypes.c_uint32), ("accum", ctypes.POINTER(ctypes.c_float)),
                ("apply", ctypes.c_int32), ("accum_scale", ctypes.c_float),
                ("momentum", ctypes.POINTER(ctypes.c_float)), ("momentum_coef", ctypes.c_float)]


class LrSchedule(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int32), ("base_lr", ctypes.c_float), ("warmup", ctypes.c_uint32),
                ("total", ctypes.c_uint32)]


class InvertedBottleneckParams(ctypes.Structure):
    _fields_ = [("has_expand", ctypes.c_int32), ("expand", ConvParams), ("expand_q", PerChannelQuant),
                ("depthwise", ConvParams), ("depthwise_q", PerChannelQuant), ("project", ConvParams),
                ("project_q", PerChannelQuant), ("has_residual", ctypes.c_int32), ("shortcut_first", ctypes.c_int32),
                ("add", AddParams)]


class InvertedBottleneckGradParams(ctypes.Structure):
    _fields_ = [("depthwise", ConvParams), ("project_out_c", ctypes.c_int32), ("expand_in_c", ctypes.c_int32),
                ("input_zero_point", ctypes.c_int32), ("input_scale", ctypes.c_float),
                ("channels_per_pass", ctypes.c_int32)]


class ExpandUpdate(ctypes.Structure):
    _fields_ = [("weights", ctypes.POINTER(ctypes.c_int8)), ("weights_sliced", ctypes.c_int32),
                ("factor", ctypes.POINTER(ctypes.c_float)), ("index", ctypes.POINTER(ctypes.c_int32)),
                ("count", ctypes.c_int32), ("u", UpdateParams), ("grad_row", ctypes.POINTER(ctypes.c_float))]


class PoolParams(ctypes.Structure):
    _fields_ = _fields("in_h in_w c out_h out_w filter_h filter_w stride_h stride_w pad_top pad_left act_min act_max "
                       "count_include_pad")


class PadParams(ctypes.Structure):
    _fields_ = _fields("in_h in_w in_c pad_top pad_bottom pad_left pad_right pad_front pad_back pad_value")


class ConcatParams(ctypes.Structure):
    _fields_ = _fields("outer in_inner out_inner offset")


class SoftmaxParams(ctypes.Structure):
    _fields_ = _fields("rows size input_multiplier input_left_shift diff_min")


# --- mt_flash.h: the flash driver and the checkpoint's state spans and report -----------------
FlashErase = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
FlashProgram = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint8),
                                ctypes.c_uint32)
FlashRead = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint8),
                             ctypes.c_uint32)


class Flash(ctypes.Structure):
    _fields_ = [("erase_page", FlashErase), ("program", FlashProgram), ("read", FlashRead), ("ctx", ctypes.c_void_p),
                ("page_size", ctypes.c_uint32), ("pages", ctypes.c_uint32), ("write_unit", ctypes.c_uint32)]


class StateSpan(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("bytes", ctypes.c_uint32)]


class CheckpointInfo(ctypes.Structure):
    _fields_ = [("status", ctypes.c_int32 * 2), ("sequence", ctypes.c_uint32 * 2), ("model_id", ctypes.c_uint32 * 2),
                ("payload_bytes", ctypes.c_uint32 * 2), ("newest", ctypes.c_int32), ("written_slot", ctypes.c_int32),
                ("written_sequence", ctypes.c_uint32), ("bytes_programmed", ctypes.c_uint32),
                ("pages_erased", ctypes.c_uint32)]


_P = ctypes.POINTER
_i8, _u8, _i32, _f32 = _P(ctypes.c_int8), _P(ctypes.c_uint8), _P(ctypes.c_int32), _P(ctypes.c_float)
_I, _U, _F = ctypes.c_int32, ctypes.c_uint32, ctypes.c_float
_conv, _fc, _q, _ch = _P(ConvParams), _P(FcParams), _P(PerChannelQuant), _P(Channels)
# mt_read_rows_fn: void (*)(int8_t *dst, int32_t first_row, int32_t rows, void *ctx)
ReadRows = ctypes.CFUNCTYPE(None, _i8, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p)

# name: (restype, argtypes), exactly the prototypes of mt_runtime.h
PROTOTYPES: dict[str, tuple[type, list[type]]] = {
    "mt_requantize": (_I, [_I, _I, _I]),
    "mt_update_noise": (_U, [_U, _U, _U, _U]),
    "mt_round_update": (_F, [_F, _I, _U, _U, _U, _U]),
    "mt_conv2d_s8": (_I, [_conv, _q, _i8, _i8, _i32, _i8]),
    "mt_depthwise_conv2d_s8": (_I, [_conv, _q, _i8, _i8, _i32, _i8]),
    "mt_pointwise_conv2d_s8": (_I, [_conv, _q, _i8, _i8, _i32, _i8]),
    "mt_pointwise_conv2d_rows_s8": (_I, [_conv, _q, _i8, _i8, _P(_i8), _i32, _i8]),
    "mt_conv_pack_get_size": (_I, [_conv, _I]),
    "mt_conv_pack_s8": (_I, [_conv, _q, _i8, _i32, _I, _i32]),
    "mt_fully_connected_s8": (_I, [_fc, _q, _i8, _i8, _i32, _i8]),
    "mt_add_s8": (_I, [_P(AddParams), _i8, _i8, _i8]),
    "mt_global_avg_pool_s8": (_I, [_P(AvgPoolParams), _i8, _i8]),
    "mt_dequantize_s8_f32": (_I, [_i8, _I, _F, _I, _f32]),
    "mt_softmax_cross_entropy_f32": (_I, [_f32, _I, _I, _f32, _f32]),
    "mt_mean_squared_error_f32": (_I, [_f32, _i8, _I, _F, _I, _f32, _f32]),
    "mt_clamp_mask_get_buffer_size": (_I, [_I]),
    "mt_clamp_mask_s8": (_I, [_i8, _I, _I, _I, _u8]),
    "mt_apply_mask_f32": (_I, [_f32, _u8, _I, _f32]),
    "mt_add_f32": (_I, [_f32, _f32, _I, _f32]),
    "mt_conv2d_grad_input_f32": (_I, [_conv, _f32, _i8, _f32, _f32]),
    "mt_depthwise_conv2d_grad_input_f32": (_I, [_conv, _f32, _i8, _f32, _f32]),
    "mt_depthwise_conv2d_grad_input_inplace_get_buffer_size": (_I, [_conv]),
    "mt_depthwise_conv2d_grad_input_inplace_f32": (_I, [_conv, _f32, _i8, _f32, _f32]),
    "mt_pointwise_conv2d_grad_input_f32": (_I, [_conv, _f32, _i8, _f32, _f32]),
    "mt_pointwise_conv2d_grad_input_rows_f32": (_I, [_conv, _f32, _i8, _P(_i8), _f32, _f32]),
    "mt_conv2d_grad_weight_get_buffer_size": (_I, [_conv, _I]),
    "mt_conv2d_grad_weight_f32": (_I, [_conv, _F, _i8, _f32, _ch, _f32]),
    "mt_depthwise_conv2d_grad_weight_f32": (_I, [_conv, _F, _i8, _I, _f32, _ch, _f32]),
    "mt_pointwise_conv2d_grad_weight_f32": (_I, [_conv, _F, _i8, _f32, _ch, _f32]),
    "mt_gather_channels_get_buffer_size": (_I, [_I, _I]),
    "mt_gather_channels_s8": (_I, [_i8, _I, _I, _ch, _i8]),
    "mt_fully_connected_grad_input_f32": (_I, [_fc, _f32, _i8, _f32, _f32]),
    "mt_fully_connected_grad_weight_get_buffer_size": (_I, [_fc, _I]),
    "mt_fully_connected_grad_weight_f32": (_I, [_fc, _F, _i8, _f32, _ch, _f32]),
    "mt_bias_grad_f32": (_I, [_f32, _I, _I, _ch, _f32]),
    "mt_global_avg_pool_grad_f32": (_I, [_I, _I, _I, _f32, _f32]),
    "mt_sgd_update_s8": (_I, [_i8, _I, _I, _f32, _f32, _ch, _P(UpdateParams)]),
    "mt_sgd_update_s32": (_I, [_i32, _f32, _f32, _ch, _P(UpdateParams)]),
    "mt_inverted_bottleneck_get_buffer_size": (_I, [_P(InvertedBottleneckParams)]),
    "mt_inverted_bottleneck_s8": (_I, [_P(InvertedBottleneckParams), _i8, _i8, _i32, _i8, _i32, _i8, _i32, _i8, _i8]),
    "mt_inverted_bottleneck_stream_s8": (_I, [_P(InvertedBottleneckParams), ReadRows, ctypes.c_void_p, _i8, _i8,
                                              _i32, _i8, _i32, _i8, _i32, _i8, _i8]),
    "mt_inverted_bottleneck_grad_get_buffer_size": (_I, [_P(InvertedBottleneckGradParams)]),
    "mt_inverted_bottleneck_grad_f32": (_I, [_P(InvertedBottleneckGradParams), _f32, _i8, _f32, _u8, _i8, _f32, _u8,
                                             _i8, _P(_i8), _f32, _i8, _P(ExpandUpdate), _f32, _f32, _f32, _f32]),
    "mt_expf": (_F, [_F]),
    "mt_logf": (_F, [_F]),
    "mt_cos_pi": (_F, [_F]),
    "mt_floorf": (_F, [_F]),
    "mt_learning_rate": (_F, [_P(LrSchedule), _U]),
    "mt_avg_pool2d_s8": (_I, [_P(PoolParams), _i8, _i8]),
    "mt_max_pool2d_s8": (_I, [_P(PoolParams), _i8, _i8]),
    "mt_pad_s8": (_I, [_P(PadParams), _i8, _i8]),
    "mt_concat_part_s8": (_I, [_P(ConcatParams), _i8, _i8]),
    "mt_softmax_s8": (_I, [_P(SoftmaxParams), _i8, _i8]),
    "mt_avg_pool2d_grad_f32": (_I, [_P(PoolParams), _f32, _f32]),
    "mt_max_pool2d_grad_f32": (_I, [_P(PoolParams), _i8, _f32, _f32]),
    "mt_pad_grad_f32": (_I, [_P(PadParams), _f32, _f32]),
    "mt_concat_part_grad_f32": (_I, [_P(ConcatParams), _f32, _f32]),
    "mt_quantize_error_s8": (_I, [_f32, _u8, _I, _i8, _i32]),
    "mt_quantize_error_s16": (_I, [_f32, _u8, _I, _P(ctypes.c_int16), _i32]),
    "mt_bias_grad_err_f32": (_I, [_P(Error), _I, _I, _ch, _f32]),
    "mt_conv2d_grad_weight_err_f32": (_I, [_conv, _F, _i8, _I, _P(Error), _ch, _f32]),
    "mt_fully_connected_grad_weight_err_f32": (_I, [_fc, _F, _i8, _P(Error), _ch, _f32]),
    "mt_conv2d_grad_input_err_f32": (_I, [_conv, _f32, _i8, _P(_i8), _P(Error), _f32]),
    "mt_fully_connected_grad_input_err_f32": (_I, [_fc, _f32, _i8, _P(Error), _f32]),
    "mt_crc32": (_U, [_U, _u8, _U]),
    "mt_checkpoint_slot_pages": (_U, [_P(Flash), _U]),
    "mt_checkpoint_scan": (_I, [_P(Flash), _U, _U, _P(CheckpointInfo)]),
    "mt_checkpoint_save": (_I, [_P(Flash), _U, _P(StateSpan), _I, _P(CheckpointInfo)]),
    "mt_checkpoint_restore": (_I, [_P(Flash), _U, _P(StateSpan), _I, _P(CheckpointInfo)]),
}


def load(path: Path, functions: Iterable[str] | None = None) -> ctypes.CDLL:
    """Open the shared library and declare every prototype (or those of ``functions``, for a library of
    some sources only) so that ctypes converts arguments."""
    lib = ctypes.CDLL(str(path))
    names = PROTOTYPES if functions is None else list(functions)
    for name in names:
        restype, argtypes = PROTOTYPES[name]
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib
