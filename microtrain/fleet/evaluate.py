"""Accuracy of a fleet model on the union test set, with the device's int8 arithmetic.

``Evaluator`` computes the frozen prefix of the test images once (frozen weights never move)
in chunks, keeps it as int8 codes, and scores any set of trained rows (``Manifest`` arrays) by
loading them into its simulator: the prediction is the argmax of the int8 logits, exactly what
the device's ``mt_infer`` returns.
"""

from __future__ import annotations

import numpy as np
import torch

from microtrain.fleet.device import SimDevice, take
from microtrain.ir.graph import Graph
from microtrain.scheme import UpdateScheme


class Evaluator:
    def __init__(self, graph: Graph, scheme: UpdateScheme, images: np.ndarray, labels: np.ndarray,
                 data_id: dict | None = None, cache_dir=None) -> None:
        from microtrain.fleet.prefix import prefix_codes

        self.sim = SimDevice(graph, scheme, "nearest")
        self.labels = np.asarray(labels, dtype=np.int64)
        self.cache = prefix_codes(graph, scheme, images, data_id or {}, cache_dir if data_id else None,
                                  self.sim.prefix)

    def predictions(self, arrays: list[np.ndarray], chunk: int = 1000) -> np.ndarray:
        sim = self.sim.trainer.sim
        self.sim.manifest.load_into(sim, arrays)
        sim.attach_grads([])
        out = []
        with torch.no_grad():
            for i in range(0, len(self.labels), chunk):
                logits, _ = sim.forward(cached=take(self.cache, slice(i, i + chunk)))
                out.append(logits.argmax(1).numpy())
        return np.concatenate(out)

    def accuracy(self, arrays: list[np.ndarray]) -> float:
        return float(np.mean(self.predictions(arrays) == self.labels))
