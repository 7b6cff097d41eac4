"""Executable definitions of the window and copy ops, as TFLite Micro's int8 reference kernels.

Plain numpy on one sample (NHWC, batch 1); the eval rules of the reference interpreter
call these, the simulator and the C kernels are tested against them.

* ``avg_pool2d_s8``: for each output pixel, the window (attrs ``filter``, ``stride``, the
  top/left of ``padding``) clipped to the image; ``acc`` = sum of the raw int8 values in
  it, ``n`` = number of those values (padding is not counted, as in TFLM; with
  ``count_include_pad`` the full window size is the divisor, as PyTorch's default);
  ``y = clamp(round(acc / n))`` with halves away from zero (TFLM's
  ``acc > 0 ? (acc + n/2) / n : (acc - n/2) / n`` in C integer division). No
  requantization: input and output share one quantization.
* ``max_pool2d_s8``: the maximum over the clipped window, then the clamp.
* ``pad_s8``: the input placed at offset ``pads[d][0]`` of each axis, the rest ``pad_value``.
* ``concat``: the inputs side by side along ``axis`` (all share one quantization).
"""

from __future__ import annotations

import numpy as np


def _windows(h: int, w: int, oh: int, ow: int, filt, stride, padding):
    fh, fw = filt
    sh, sw = stride
    top, left = padding[0], padding[1]
    for oy in range(oh):
        y0 = oy * sh - top
        ys = slice(max(y0, 0), min(y0 + fh, h))
        for ox in range(ow):
            x0 = ox * sw - left
            yield oy, ox, ys, slice(max(x0, 0), min(x0 + fw, w))


def avg_pool2d_s8(x: np.ndarray, out_hw: tuple[int, int], filt, stride, padding, act_min: int = -128,
                  act_max: int = 127, count_include_pad: bool = False) -> np.ndarray:
    _, h, w, c = x.shape
    oh, ow = out_hw
    out = np.empty((1, oh, ow, c), dtype=np.int8)
    xi = x[0].astype(np.int64)
    for oy, ox, ys, xs in _windows(h, w, oh, ow, filt, stride, padding):
        window = xi[ys, xs].reshape(-1, c)
        n = filt[0] * filt[1] if count_include_pad else window.shape[0]
        if window.shape[0] == 0:
            raise ValueError(f"average pool window at output ({oy}, {ox}) lies outside the input")
        acc = window.sum(axis=0)
        q = np.where(acc > 0, (acc + n // 2) // n, -((-acc + n // 2) // n))  # C division truncates toward zero
        out[0, oy, ox] = np.clip(q, act_min, act_max)
    return out


def max_pool2d_s8(x: np.ndarray, out_hw: tuple[int, int], filt, stride, padding, act_min: int = -128,
                  act_max: int = 127) -> np.ndarray:
    _, h, w, c = x.shape
    oh, ow = out_hw
    out = np.empty((1, oh, ow, c), dtype=np.int8)
    for oy, ox, ys, xs in _windows(h, w, oh, ow, filt, stride, padding):
        window = x[0, ys, xs].reshape(-1, c)
        m = window.max(axis=0) if window.shape[0] else np.full(c, -128, np.int8)
        out[0, oy, ox] = np.clip(m, act_min, act_max)
    return out


def pad_s8(x: np.ndarray, pads, pad_value: int) -> np.ndarray:
    return np.pad(x, tuple(tuple(p) for p in pads), constant_values=np.int8(pad_value)).astype(x.dtype)


def concat(xs: list[np.ndarray], axis: int) -> np.ndarray:
    return np.concatenate(xs, axis=axis)


# --- gradients (fp32, w.r.t. real values), in the exact order of their C kernels ------------

def avg_pool2d_grad(g: np.ndarray, in_shape, filt, stride, padding, count_include_pad: bool = False) -> np.ndarray:
    """dL/dx of the average pool: ``dx = 0``; for each output (oy, ox) ascending, every input
    pixel of its clipped window gets ``+= g[oy, ox] / n`` (float32, n the divisor of the forward).
    Rounding is straight-through, so this is the derivative of the real-valued mean."""
    _, h, w, c = in_shape
    _, oh, ow, _ = g.shape
    dx = np.zeros((h, w, c), dtype=np.float32)
    for oy, ox, ys, xs in _windows(h, w, oh, ow, filt, stride, padding):
        n = filt[0] * filt[1] if count_include_pad else (ys.stop - ys.start) * (xs.stop - xs.start)
        share = (g[0, oy, ox].astype(np.float32) / np.float32(n)).astype(np.float32)
        for y in range(ys.start, ys.stop):
            for x in range(xs.start, xs.stop):
                dx[y, x] = (dx[y, x] + share).astype(np.float32)
    return dx[None]


def max_pool2d_argmax(x: np.ndarray, out_hw, filt, stride, padding) -> np.ndarray:
    """[oh, ow, c] flat input index (y * W + x) of each window's maximum: the first one in
    row-major window order (rows, then columns, ascending), as the C scans."""
    _, h, w, c = x.shape
    oh, ow = out_hw
    idx = np.zeros((oh, ow, c), dtype=np.int64)
    for oy, ox, ys, xs in _windows(h, w, oh, ow, filt, stride, padding):
        window = x[0, ys, xs].reshape(-1, c)
        first = np.argmax(window, axis=0)  # numpy: the first occurrence of the maximum
        wy, wx = np.divmod(first, xs.stop - xs.start)
        idx[oy, ox] = (ys.start + wy) * w + (xs.start + wx)
    return idx


def max_pool2d_grad(g: np.ndarray, x: np.ndarray, filt, stride, padding) -> np.ndarray:
    """dL/dx of the max pool: each output's gradient goes to its window's first maximum
    (``max_pool2d_argmax``), outputs in ascending order, float32 sums."""
    _, h, w, c = x.shape
    _, oh, ow, _ = g.shape
    idx = max_pool2d_argmax(x, (oh, ow), filt, stride, padding)
    dx = np.zeros((h * w, c), dtype=np.float32)
    cols = np.arange(c)
    for oy in range(oh):
        for ox in range(ow):
            dx[idx[oy, ox], cols] = (dx[idx[oy, ox], cols] + g[0, oy, ox].astype(np.float32)).astype(np.float32)
    return dx.reshape(1, h, w, c)


def pad_grad(g: np.ndarray, pads) -> np.ndarray:
    """dL/dx of PAD: the inner block of the output gradient."""
    idx = tuple(slice(a, g.shape[d] - b) for d, (a, b) in enumerate(pads))
    return np.ascontiguousarray(g[idx]).astype(np.float32)


def concat_grad(g: np.ndarray, axis: int, offset: int, size: int) -> np.ndarray:
    """dL/dx of one CONCAT input: its slice [offset, offset + size) along ``axis``."""
    idx = [slice(None)] * g.ndim
    idx[axis] = slice(offset, offset + size)
    return np.ascontiguousarray(g[tuple(idx)]).astype(np.float32)


# --- eval rules (reference interpreter tables: interp/reference.py, interp/training.py) -----

def _pool_args(node):
    return (tuple(node.attrs["filter"]), tuple(node.attrs.get("stride", (1, 1))),
            tuple(node.attrs.get("padding", (0, 0, 0, 0))))


def _avg_pool2d(node, graph, values):
    y = graph.tensors[node.outputs[0]]
    return [avg_pool2d_s8(values[node.inputs[0]], y.shape[1:3], *_pool_args(node), node.attrs.get("act_min", -128),
                          node.attrs.get("act_max", 127), bool(node.attrs.get("count_include_pad", False)))]


def _max_pool2d(node, graph, values):
    y = graph.tensors[node.outputs[0]]
    return [max_pool2d_s8(values[node.inputs[0]], y.shape[1:3], *_pool_args(node), node.attrs.get("act_min", -128),
                          node.attrs.get("act_max", 127))]


def _pad(node, graph, values):
    return [pad_s8(values[node.inputs[0]], node.attrs["pads"], node.attrs["pad_value"])]


def _concat(node, graph, values):
    return [concat([values[n] for n in node.inputs], int(node.attrs["axis"]))]


def _softmax(node, graph, values):
    from microtrain.quant import softmax_s8

    return [softmax_s8(values[node.inputs[0]], node.attrs.get("beta", 1.0), graph.tensors[node.inputs[0]].quant.s)]


def _avg_pool2d_grad(node, graph, values):
    return [avg_pool2d_grad(values[node.inputs[0]], tuple(node.attrs["input_shape"]), *_pool_args(node),
                            bool(node.attrs.get("count_include_pad", False)))]


def _max_pool2d_grad(node, graph, values):
    return [max_pool2d_grad(values[node.inputs[0]], values[node.inputs[1]], *_pool_args(node))]


def _pad_grad(node, graph, values):
    return [pad_grad(values[node.inputs[0]], node.attrs["pads"])]


def _concat_grad(node, graph, values):
    return [concat_grad(values[node.inputs[0]], int(node.attrs["axis"]), int(node.attrs["offset"]),
                        int(node.attrs["size"]))]


WINDOW_EVAL_RULES = {
    "AVG_POOL2D": _avg_pool2d, "MAX_POOL2D": _max_pool2d, "PAD": _pad, "CONCAT": _concat, "SOFTMAX": _softmax,
}
WINDOW_GRAD_EVAL_RULES = {
    "AVG_POOL2D_GRAD": _avg_pool2d_grad, "MAX_POOL2D_GRAD": _max_pool2d_grad, "PAD_GRAD": _pad_grad,
    "CONCAT_GRAD": _concat_grad,
}
"""Keyed by op name; ``interp/reference.py`` and ``interp/training.py`` put them in their tables."""


# --- batched rules (interp/batched.py: the same integers over a leading batch axis) ---------

def _avg_pool2d_batch(node, graph, values):
    """The average pool on [N, H, W, C] at once: window sums and counts per output pixel."""
    x = values[node.inputs[0]].astype(np.int64)
    y = graph.tensors[node.outputs[0]]
    (fh, fw), stride, padding = _pool_args(node)
    n, h, w, c = x.shape
    oh, ow = y.shape[1:3]
    out = np.empty((n, oh, ow, c), dtype=np.int8)
    for oy, ox, ys, xs in _windows(h, w, oh, ow, (fh, fw), stride, padding):
        cnt = fh * fw if node.attrs.get("count_include_pad", False) else (ys.stop - ys.start) * (xs.stop - xs.start)
        acc = x[:, ys, xs].sum(axis=(1, 2))
        q = np.where(acc > 0, (acc + cnt // 2) // cnt, -((-acc + cnt // 2) // cnt))
        out[:, oy, ox] = np.clip(q, node.attrs.get("act_min", -128), node.attrs.get("act_max", 127))
    return [out]


def _max_pool2d_batch(node, graph, values):
    x = values[node.inputs[0]]
    y = graph.tensors[node.outputs[0]]
    filt, stride, padding = _pool_args(node)
    n, h, w, c = x.shape
    oh, ow = y.shape[1:3]
    out = np.empty((n, oh, ow, c), dtype=np.int8)
    for oy, ox, ys, xs in _windows(h, w, oh, ow, filt, stride, padding):
        out[:, oy, ox] = np.clip(x[:, ys, xs].max(axis=(1, 2)), node.attrs.get("act_min", -128),
                                 node.attrs.get("act_max", 127))
    return [out]


def _pad_batch(node, graph, values):
    return [np.pad(values[node.inputs[0]], tuple(tuple(p) for p in node.attrs["pads"]),
                   constant_values=np.int8(node.attrs["pad_value"]))]


def _softmax_batch(node, graph, values):
    from microtrain.quant import softmax_s8

    x = values[node.inputs[0]]
    return [softmax_s8(x, node.attrs.get("beta", 1.0), graph.tensors[node.inputs[0]].quant.s)]


WINDOW_BATCH_RULES = {
    "AVG_POOL2D": _avg_pool2d_batch, "MAX_POOL2D": _max_pool2d_batch, "PAD": _pad_batch, "CONCAT": _concat,
    "SOFTMAX": _softmax_batch,
}
"""Keyed by op name; ``interp/batched.py`` puts them in ``BATCH_RULES``."""
