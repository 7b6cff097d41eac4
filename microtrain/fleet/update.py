"""What travels between a device and the fleet server: the trained sub-tensors, nothing else.

A ``Manifest`` lists the tensors a scheme trains, in ``trained_tensor_order`` (the order of the
device's ``mt_trainable[]`` and the rounding rule's ``tensor_id``); for each, the rows (output
channels) that move: the kept channels of a sub-tensor weight update, every channel of a
bias. An update is one array per manifest entry, the kept rows only, in the device's own
types (int8 weights, int32 biases); frozen weights and frozen rows never travel and never
change. Both directions carry the same arrays: the server sends the global sub-tensors of
the round, the device returns its trained ones.

Real units: a weight row c is worth ``s_W[c] * w_q`` and a bias ``s_W[c] * s_x * b_q``
(``real_scales``); the server aggregates in these units and requantizes on the same scales,
which never change (the device has no way to change them).

``fingerprint`` names the manifest (tensor names, rows, shapes, dtypes) in 16 hex digits; a
device reports it with every update so that the server can refuse an update made for another
model or scheme.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import torch

from microtrain.ir.graph import Graph
from microtrain.scheme import UpdateScheme, trained_tensor_order


@dataclasses.dataclass(frozen=True)
class Slice:
    name: str  # the tensor's name in the graph
    layer: str
    kind: str  # "weight" | "bias"
    rows: tuple[int, ...]  # output channels that train (sorted)
    shape: tuple[int, ...]  # shape on the wire: (len(rows), *full_shape[1:])
    dtype: str  # "int8" | "int32"
    tensor_id: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclasses.dataclass(frozen=True)
class Manifest:
    slices: tuple[Slice, ...]
    scales: tuple[np.ndarray, ...]  # float64 real-unit scale of each wire row, per slice

    @staticmethod
    def build(graph: Graph, scheme: UpdateScheme) -> Manifest:
        slices, scales = [], []
        for tid, (layer, kind) in enumerate(trained_tensor_order(scheme, graph)):
            node = graph.node(layer)
            x_t, w_t, b_t = (graph.tensors[n] for n in node.inputs)
            t = w_t if kind == "weight" else b_t
            if kind == "weight":
                rows = tuple(int(c) for c in scheme.weight_update(layer).channels)
            else:
                rows = tuple(range(t.shape[0]))
            s_w = np.asarray(w_t.quant.scales(), dtype=np.float64)
            s = s_w if kind == "weight" else s_w * float(x_t.quant.s)
            slices.append(Slice(t.name, layer, kind, rows, (len(rows), *t.shape[1:]), t.dtype, tid))
            scales.append(s[list(rows)])
        if not slices:
            raise ValueError("the scheme trains nothing: a fleet needs at least one trained tensor")
        return Manifest(tuple(slices), tuple(scales))

    # --- identity and size --------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        doc = [[s.name, s.kind, list(s.rows), list(s.shape), s.dtype] for s in self.slices]
        return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]

    @property
    def payload_bytes(self) -> int:
        """Bytes of one update's tensor data (int8 weights, int32 biases of the kept rows)."""
        return sum(s.nbytes for s in self.slices)

    # --- arrays <-> models --------------------------------------------------------------------
    def extract(self, graph: Graph) -> list[np.ndarray]:
        """The wire arrays of a graph's trained tensors."""
        return [np.ascontiguousarray(graph.tensors[s.name].data[list(s.rows)]).astype(s.dtype) for s in self.slices]

    def apply(self, graph: Graph, arrays: list[np.ndarray]) -> Graph:
        """The graph with the trained rows replaced by ``arrays`` (everything else unchanged)."""
        tensors = dict(graph.tensors)
        for s, arr in zip(self.slices, arrays, strict=True):
            data = np.array(tensors[s.name].data, copy=True)
            data[list(s.rows)] = arr
            tensors[s.name] = tensors[s.name].with_data(data.astype(s.dtype))
        return graph.replace(tensors=tensors)

    def full_tensors(self, graph: Graph, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every trained tensor in its full shape (the frozen rows from ``graph``): what a device holds."""
        applied = self.apply(graph, arrays)
        return {s.name: applied.tensors[s.name].data for s in self.slices}

    def load_into(self, sim, arrays: list[np.ndarray]) -> None:
        """Write the arrays into a ``Simulator``'s integer codes (kept rows only)."""
        for s, arr in zip(self.slices, arrays, strict=True):
            p = sim.params[s.layer]
            codes = p.w_q if s.kind == "weight" else p.b_q
            codes[torch.as_tensor(s.rows)] = torch.from_numpy(np.asarray(arr, dtype=np.int64))

    def read_from(self, sim) -> list[np.ndarray]:
        """A ``Simulator``'s present trained rows as wire arrays."""
        out = []
        for s in self.slices:
            p = sim.params[s.layer]
            codes = (p.w_q if s.kind == "weight" else p.b_q).numpy()
            out.append(np.ascontiguousarray(codes[list(s.rows)]).astype(s.dtype))
        return out

    # --- real units ---------------------------------------------------------------------------
    def to_real(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Wire arrays -> float64 real values (each row times its scale)."""
        return [np.asarray(a, dtype=np.float64) * sc.reshape((-1,) + (1,) * (len(s.shape) - 1))
                for s, a, sc in zip(self.slices, arrays, self.scales, strict=True)]

    def to_units(self, real: list[np.ndarray]) -> list[np.ndarray]:
        """float64 real values -> float64 values in integer units (not yet rounded)."""
        return [np.asarray(r, dtype=np.float64) / sc.reshape((-1,) + (1,) * (len(s.shape) - 1))
                for s, r, sc in zip(self.slices, real, self.scales, strict=True)]

    def flat_index(self, i: int) -> np.ndarray:
        """Flat element index, within the full tensor, of every element of slice ``i`` (the
        rounding rule's ``index``, as for sub-tensor updates on the device)."""
        s = self.slices[i]
        inner = int(np.prod(s.shape[1:])) if len(s.shape) > 1 else 1
        rows = np.asarray(s.rows, dtype=np.int64).reshape((-1,) + (1,) * (len(s.shape) - 1))
        return rows * inner + np.arange(inner, dtype=np.int64).reshape(s.shape[1:] or ())


def model_bytes(graph: Graph) -> dict[str, int]:
    """What sending the whole model would cost: every conv/linear weight and bias, as stored
    (int8 weights, int32 biases) and as float32 (a float federated model)."""
    stored = params = 0
    for node in graph.weighted_nodes():
        for name in node.inputs[1:3]:
            t = graph.tensors[name]
            stored += t.nbytes
            params += int(np.prod(t.shape))
    return {"int8_model_bytes": stored, "fp32_model_bytes": 4 * params, "parameters": params}
