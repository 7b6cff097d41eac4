"""Preprocessing of images to a model's input: size, channels, range and quantization.

Every graph records how its input is made in ``graph.meta["preprocess"]``::

    {"resolution": [H, W], "channels": C, "range": [lo, hi]}

An image with pixel values in [0, 1] (float) or [0, 255] (uint8) is resized to H x W
(bilinear), converted to C channels (gray <-> RGB), mapped linearly from [0, 1] to
[lo, hi] (the zoo models use [-1, 1]) and quantized with the graph input's scale and zero
point. The result is int8 NHWC, in the shape of the graph's input: a model whose input is
[1, 1, L, C] (a Conv1d network over L frames of C features, ``frontend/float_plan.py``)
reads an image of L rows and C columns, row t being frame t; a model whose input is [1, F]
reads the image flattened in HWC order. Both are the image's bytes unchanged.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from microtrain import quant
from microtrain.ir.graph import Graph

DEFAULT_PREPROCESS = {"resolution": [28, 28], "channels": 1, "range": [0.0, 1.0]}


def preprocess_spec(graph: Graph) -> dict:
    spec = dict(graph.meta.get("preprocess", {}))
    x = graph.tensors[graph.inputs[0]]
    if "resolution" not in spec:  # (an image input [1, H, W, C]; other inputs record theirs)
        spec["resolution"] = [x.shape[1], x.shape[2]]
    if "channels" not in spec:
        spec["channels"] = x.shape[3]
    spec.setdefault("range", [0.0, 1.0])
    return spec


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 [0,255] or float [0,1] images, [N,H,W] or [N,H,W,C] -> float32 [N,H,W,C] in [0,1]."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    else:
        images = images.astype(np.float32)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must be [N,H,W] or [N,H,W,C], got shape {images.shape}")
    return images


def resize_images(images: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """float [N,H,W,C] in [0,1] -> float [N,height,width,channels], bilinear."""
    n, h, w, c = images.shape
    if c not in (1, 3) or channels not in (1, 3):
        raise ValueError(f"can only convert between 1 and 3 channels, not {c} -> {channels}")
    if c == 3 and channels == 1:
        images = (images @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    elif c == 1 and channels == 3:
        images = np.repeat(images, 3, axis=3)
    if (h, w) == (height, width):
        return images.astype(np.float32)
    out = np.empty((n, height, width, channels), dtype=np.float32)
    for i in range(n):
        for ch in range(channels):
            img = Image.fromarray(images[i, :, :, ch].astype(np.float32), mode="F")
            out[i, :, :, ch] = np.asarray(img.resize((width, height), Image.BILINEAR))
    return np.clip(out, 0.0, 1.0)


def preprocess(images: np.ndarray, graph: Graph) -> np.ndarray:
    """Images -> int8 [N, H, W, C] quantized for ``graph``'s input (see module doc)."""
    spec = preprocess_spec(graph)
    height, width = spec["resolution"]
    lo, hi = spec["range"]
    x = resize_images(to_unit_float(images), height, width, spec["channels"])
    real = lo + (hi - lo) * x
    x_t = graph.tensors[graph.inputs[0]]
    q = quant.quantize(real, x_t.quant.s, x_t.quant.z)
    if q.shape[1:] != tuple(x_t.shape[1:]) and q[0].size == int(np.prod(x_t.shape[1:])):
        q = q.reshape((len(q),) + tuple(x_t.shape[1:]))
    return q


def preprocess_float(images: np.ndarray, spec: dict) -> np.ndarray:
    """Images -> float32 [N, H, W, C] in the model's real input range (for float models)."""
    height, width = spec["resolution"]
    lo, hi = spec["range"]
    x = resize_images(to_unit_float(images), height, width, spec["channels"])
    return (lo + (hi - lo) * x).astype(np.float32)
