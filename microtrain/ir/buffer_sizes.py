"""Python twins of the C runtime's buffer-size queries (bytes), one per ``*_get_buffer_size``.

Each returns the same number as the C function of the same name in
``runtime/include/mt_runtime.h`` (``tests/test_runtime_twins.py`` checks each against the C).
They are shape arithmetic only, so the shape rules (``ir/shapes_*.py``) size masks, gradient
buffers and scratch with them, and ``ir/registry.py`` lists the per-op ``BUFFER_RULES``.
"""

from __future__ import annotations

FLOAT_BYTES = 4


def clamp_mask_get_buffer_size(n: int) -> int:
    """Twin of mt_clamp_mask_get_buffer_size: one bit per element, rounded up to bytes."""
    return 0 if n <= 0 else (n + 7) // 8


def conv2d_grad_weight_get_buffer_size(kernel_h: int, kernel_w: int, in_c: int, groups: int,
                                       num_channels: int) -> int:
    """Twin of mt_conv2d_grad_weight_get_buffer_size (also depthwise: groups == in_c)."""
    if groups < 1 or num_channels <= 0:
        return 0
    return num_channels * kernel_h * kernel_w * (in_c // groups) * FLOAT_BYTES


def fully_connected_grad_weight_get_buffer_size(in_c: int, num_channels: int) -> int:
    """Twin of mt_fully_connected_grad_weight_get_buffer_size."""
    return 0 if num_channels <= 0 else num_channels * in_c * FLOAT_BYTES


def depthwise_conv2d_grad_input_inplace_get_buffer_size(in_h: int, in_w: int) -> int:
    """Twin of mt_depthwise_conv2d_grad_input_inplace_get_buffer_size: one channel plane of floats."""
    return 0 if in_h <= 0 or in_w <= 0 else in_h * in_w * FLOAT_BYTES


def gather_channels_get_buffer_size(spatial: int, count: int) -> int:
    """Twin of mt_gather_channels_get_buffer_size: the sliced int8 copy of kept channels."""
    return 0 if spatial <= 0 or count <= 0 else spatial * count


IB_STRIP = 32
"""MT_NN_IB_STRIP: output pixels per strip of the fused block kernel (runtime/include/mt_nn_ib.h)."""
PATCH_MAX = 64
"""MT_NN_PATCH_MAX: the largest receptive field gathered into a patch (runtime/include/mt_nn.h)."""
PW_EXTEND_MAX = 96
"""MT_NN_PW_EXTEND_MAX: the longest 1x1 row the standalone 1x1 extends whole on its stack; longer rows are
extended in chunks on every call (runtime/include/mt_nn_fast.h)."""


def inverted_bottleneck_get_buffer_size(p: dict) -> int:
    """Twin of mt_inverted_bottleneck_get_buffer_size, the layout of runtime/include/mt_nn_ib.h: the
    pre-extended weight rows of a channel pair (4 bytes per input of the longer of the expansion's and
    the projection's rows, rounded down to 4, a patched expansion's window rounded up), the ring of
    min(kernel_h, in_h) channel-planar expanded rows with the depthwise padding + 4 bytes (with an
    expansion), a strip of patches each padded to a word (a conv expansion whose window fits PATCH_MAX),
    a strip of depthwise output and of projection output (with a residual)."""
    e, d, pr = p.get("expand"), p["depthwise"], p["project"]
    one_by_one = e is not None and e["kernel_h"] == e["kernel_w"] == 1 and e["stride_w"] == 1 and \
        e["pad_left"] == e["pad_right"] == e["pad_top"] == 0
    window = e["kernel_h"] * e["kernel_w"] * e["in_c"] if e is not None else 0
    patched = p["has_expand"] and not one_by_one and window <= PATCH_MAX
    window4 = (window + 3) & ~3  # a patch row padded to a word (extended weights: 0 past the window)
    e4 = 0 if not p["has_expand"] else (e["in_c"] & ~3) if one_by_one else window4 if patched else 0
    words = max(e4, pr["in_c"] & ~3)
    strip = min(d["out_w"], IB_STRIP)
    seg = d["pad_left"] + d["in_w"] + d["pad_right"]
    ring = min(d["kernel_h"], d["in_h"]) * d["in_c"] * seg + 4 if p["has_expand"] else 0
    patch = min(e["out_w"], IB_STRIP) * window4 if patched else 0
    return 4 * words + ring + patch + strip * d["in_c"] + (strip * pr["out_c"] if p["has_residual"] else 0)


def inverted_bottleneck_grad_get_buffer_size(in_h: int, in_w: int, out_h: int, out_w: int, per_pass: int,
                                             in_c: int) -> int:
    """Twin of mt_inverted_bottleneck_grad_get_buffer_size: the planes of one pass of ``per_pass``
    (1 to 4) expanded channels at the depthwise output (out_h x out_w, each at least ``in_c`` floats,
    the block input's channels: the pass's kept weight-gradient rows are summed there) and at its
    input (in_h x in_w)."""
    if min(in_h, in_w, out_h, out_w) <= 0 or not 1 <= per_pass <= 4:
        return 0
    return per_pass * (max(out_h * out_w, in_c) + in_h * in_w) * FLOAT_BYTES
