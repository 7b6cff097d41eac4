"""The microtrain intermediate representation.

Grammar::

    Graph   = (tensors: {name: Tensor}, nodes: [Node], inputs: [name], outputs: [name])
    Tensor  = (name, shape: (int, ...), dtype, quant: QParams | None, data: ndarray | None)
    QParams = (scale: (float, ...), zero_point: (int, ...), axis: int | None)
    Node    = (name, op: Op, inputs: (name, ...), outputs: (name, ...), attrs: {str: value})

A tensor with ``data`` is a constant (weights, biases); one without is computed by exactly
one node or is a graph input. Nodes are in execution order. Activations are NHWC with a
batch of 1, weights OHWI. Quantization is per-tensor when ``axis`` is None (one scale,
one zero point) and per-channel along ``axis`` otherwise (weights: axis 0, zero point 0).

Tensors and QParams are immutable; a pass that changes a graph builds a new one
(``Graph.replace``) and the verifier (``ir/verify.py``) checks the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from microtrain.ir.ops import WEIGHTED_OPS, Op
from microtrain.ir.printer import format_graph

DTYPES = ("int8", "int32", "float32", "uint8", "int16")
"""Element types a tensor may have; uint8 is used for packed 1-bit masks, int16 for the codes of
an integer error (``--grad-dtype int16``)."""

DTYPE_BYTES = {"int8": 1, "uint8": 1, "int32": 4, "float32": 4, "int16": 2}


@dataclasses.dataclass(frozen=True)
class QParams:
    """Affine quantization: real = scale * (q - zero_point), per tensor or per channel."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None

    @staticmethod
    def per_tensor(scale: float, zero_point: int) -> QParams:
        return QParams((float(scale),), (int(zero_point),), None)

    @staticmethod
    def per_channel(scales: Iterable[float], axis: int = 0) -> QParams:
        scales = tuple(float(s) for s in scales)
        return QParams(scales, (0,) * len(scales), axis)

    @property
    def is_per_channel(self) -> bool:
        return self.axis is not None

    @property
    def s(self) -> float:
        """The scale of a per-tensor quantization."""
        assert self.axis is None, "per-channel QParams has no single scale"
        return self.scale[0]

    @property
    def z(self) -> int:
        """The zero point of a per-tensor quantization."""
        assert self.axis is None, "per-channel QParams has no single zero point"
        return self.zero_point[0]

    def scales(self) -> np.ndarray:
        return np.asarray(self.scale, dtype=np.float64)


@dataclasses.dataclass(frozen=True, eq=False)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    quant: QParams | None = None
    data: np.ndarray | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * DTYPE_BYTES[self.dtype]

    def with_data(self, data: np.ndarray) -> Tensor:
        return dataclasses.replace(self, data=data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Tensor):
            return NotImplemented
        same_data = (self.data is None and other.data is None) or (
            self.data is not None
            and other.data is not None
            and self.data.dtype == other.data.dtype
            and np.array_equal(self.data, other.data)
        )
        return (
            self.name == other.name
            and self.shape == other.shape
            and self.dtype == other.dtype
            and self.quant == other.quant
            and same_data
        )

    __hash__ = None  # type: ignore[assignment]


@dataclasses.dataclass(frozen=True)
class Node:
    name: str
    op: Op
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Graph:
    tensors: Mapping[str, Tensor]
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Free-form provenance (source file, model name, input preprocessing)."""

    def replace(self, **changes: Any) -> Graph:
        return dataclasses.replace(self, **changes)

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}")

    def producer(self, tensor_name: str) -> Node | None:
        for n in self.nodes:
            if tensor_name in n.outputs:
                return n
        return None

    def consumers(self, tensor_name: str) -> list[Node]:
        return [n for n in self.nodes if tensor_name in n.inputs]

    def weighted_nodes(self) -> list[Node]:
        """CONV2D and FULLY_CONNECTED nodes in execution order (the 'layers' of a scheme)."""
        return [n for n in self.nodes if n.op in WEIGHTED_OPS]

    def __str__(self) -> str:
        return format_graph(self)


class GraphBuilder:
    """Accumulates tensors and nodes in execution order; ``build()`` returns a Graph."""

    def __init__(self) -> None:
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.inputs: list[str] = []

    def add_tensor(self, tensor: Tensor) -> str:
        if tensor.name in self.tensors:
            raise ValueError(f"tensor {tensor.name!r} defined twice")
        self.tensors[tensor.name] = tensor
        return tensor.name

    def add_input(self, tensor: Tensor) -> str:
        self.inputs.append(self.add_tensor(tensor))
        return tensor.name

    def add_node(
        self, name: str, op: Op, inputs: Iterable[str], outputs: Iterable[str], **attrs: Any
    ) -> Node:
        node = Node(name, op, tuple(inputs), tuple(outputs), dict(attrs))
        self.nodes.append(node)
        return node

    def build(self, outputs: Iterable[str], meta: Mapping[str, Any] | None = None) -> Graph:
        return Graph(dict(self.tensors), tuple(self.nodes), tuple(self.inputs), tuple(outputs),
                     dict(meta or {}))
