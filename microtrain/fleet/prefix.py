"""The frozen prefix of a whole dataset split, computed once and shared on disk.

Frozen weights never move, so what the layers before the scheme's earliest trained layer
compute for an image never changes: not across rounds, devices or runs. ``prefix_codes``
computes it for every image of a split (chunk by chunk, preprocessing included) and keeps it
in ``cache_dir/<key>/`` as one ``.npy`` per live tensor (int8 codes where they fit); the key
hashes the prefix's nodes and constants, the preprocessing and the data identity, so a cache
made for another model, scheme cut, resolution or subset is never used. Files are written to
a temporary folder and renamed into place, and read memory-mapped, so any number of device
processes share one copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from microtrain.ir.graph import Graph
from microtrain.scheme import UpdateScheme


def prefix_key(graph: Graph, scheme: UpdateScheme, data_id: dict) -> str:
    earliest = scheme.earliest_layer(graph)
    names = [n.name for n in graph.nodes]
    cut = names.index(earliest) if earliest is not None else len(names)
    h = hashlib.sha256(json.dumps({"data": data_id, "preprocess": graph.meta.get("preprocess"),
                                   "input": [list(graph.tensors[i].shape) for i in graph.inputs],
                                   "cut": earliest}, sort_keys=True, default=str).encode())
    for node in graph.nodes[:cut]:
        h.update(json.dumps([node.op.value, list(node.inputs), list(node.outputs), node.attrs], sort_keys=True,
                            default=str).encode())
        for name in (*node.inputs, *node.outputs):
            t = graph.tensors[name]
            h.update(json.dumps([name, list(t.shape), t.dtype, None if t.quant is None else
                                 [list(t.quant.scale), list(t.quant.zero_point), t.quant.axis]]).encode())
            if t.data is not None:
                h.update(np.ascontiguousarray(t.data).tobytes())
    return h.hexdigest()[:20]


def prefix_codes(graph: Graph, scheme: UpdateScheme, images: np.ndarray, data_id: dict,
                 cache_dir: str | Path | None, compute: Callable[[np.ndarray], dict[str, np.ndarray]],
                 chunk: int = 1000) -> dict[str, np.ndarray]:
    """Prefix codes of every image (dataset images, any resolution): from the cache if present, else
    computed with ``compute`` (int8 model inputs -> compact codes) and, with a ``cache_dir``, stored."""
    from microtrain.data.preprocess import preprocess

    def run() -> dict[str, np.ndarray]:
        parts = [compute(preprocess(images[i:i + chunk], graph)) for i in range(0, len(images), chunk)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    if cache_dir is None:
        return run()
    d = Path(cache_dir) / prefix_key(graph, scheme, data_id)
    meta = d / "meta.json"
    if not meta.exists():
        codes = run()
        tmp = Path(f"{d}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        names = sorted(codes)
        for i, k in enumerate(names):
            np.save(tmp / f"{i}.npy", codes[k])
        (tmp / "meta.json").write_text(json.dumps({"tensors": names, "count": len(images), "data": data_id}))
        try:
            os.rename(tmp, d)
        except OSError:  # another process stored the same cache first
            shutil.rmtree(tmp, ignore_errors=True)
    doc = json.loads(meta.read_text())
    if doc["count"] != len(images):
        raise ValueError(f"{d}: prefix cache of {doc['count']} images, the split has {len(images)}")
    return {k: np.load(d / f"{i}.npy", mmap_mode="r", allow_pickle=False) for i, k in enumerate(doc["tensors"])}
