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
                 chunk: int = 1000) -> None:
        from microtrain.data.preprocess import preprocess

        self.sim = SimDevice(graph, scheme, "nearest")
        self.labels = np.asarray(labels, dtype=np.int64)
        parts = [self.sim.prefix(preprocess(images[i:i + chunk], graph)) for i in range(0, len(labels), chunk)]
        self.cache = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

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
