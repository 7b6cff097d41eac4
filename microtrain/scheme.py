"""UpdateScheme: which tensors a training step updates. Read by simulator, search, compiler.

A scheme names the *layers* of a graph, the weighted nodes (CONV2D, FULLY_CONNECTED) in
execution order; ``layer index`` counts them from the input (0 = the first conv), as the
MCU zoo README does, and the classifier is the last layer.

    UpdateScheme = (bias_layers: [node name],        # int32 biases updated
                    weight_layers: [WeightUpdate],   # int8 weights updated (sub-tensor)
                    head: "int8" | "fp32")           # classifier kept int8, or fp32 on features
    WeightUpdate = (layer: node name, ratio in (0, 1], channels: [output channel index])

The kept output ``channels`` of a weight update are chosen once (``select_channels``,
largest L2 norm by default) and recorded, so the simulator and the compiler slice the
same ones. JSON file format: ``{"format": "microtrain-scheme", "version": 1, ...}``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from microtrain.ir.graph import Graph

FORMAT = "microtrain-scheme"
VERSION = 1
HEADS = ("int8", "fp32")
CRITERIA = ("magnitude", "smallest", "random", "first")


class SchemeError(ValueError):
    """A scheme that does not fit its graph or is malformed; the message says what and where."""


@dataclasses.dataclass(frozen=True)
class WeightUpdate:
    layer: str
    ratio: float
    channels: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class UpdateScheme:
    bias_layers: tuple[str, ...] = ()
    weight_layers: tuple[WeightUpdate, ...] = ()
    head: str = "int8"
    name: str = ""

    # --- queries ------------------------------------------------------------------------
    def updated_layers(self) -> set[str]:
        return set(self.bias_layers) | {w.layer for w in self.weight_layers}

    def weight_update(self, layer: str) -> WeightUpdate | None:
        for w in self.weight_layers:
            if w.layer == layer:
                return w
        return None

    def earliest_layer(self, graph: Graph) -> str | None:
        """The first updated layer in execution order: backpropagation stops there."""
        updated = self.updated_layers()
        for node in graph.weighted_nodes():
            if node.name in updated:
                return node.name
        return None

    # --- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "name": self.name, "head": self.head,
                "bias_layers": list(self.bias_layers),
                "weight_layers": [{"layer": w.layer, "ratio": w.ratio, "channels": list(w.channels)}
                                  for w in self.weight_layers]}

    @staticmethod
    def from_dict(doc: dict, source: str = "<scheme>") -> UpdateScheme:
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise SchemeError(f"{source}: not a microtrain scheme (expected format {FORMAT!r})")
        # Every field as the file wrote it: a channel of 1.7 or a layer list given as one string is
        # refused, never truncated or split.
        biases, entries = doc.get("bias_layers", []), doc.get("weight_layers", [])
        head, name = doc.get("head", "int8"), doc.get("name", "")
        if not (isinstance(biases, list) and all(isinstance(b, str) for b in biases)):
            raise SchemeError(f"{source}: bias_layers must be a list of layer names")
        if not (isinstance(head, str) and isinstance(name, str)):
            raise SchemeError(f"{source}: head and name must be strings")
        if not isinstance(entries, list):
            raise SchemeError(f"{source}: weight_layers must be a list")
        weights = []
        for w in entries:
            ok = (isinstance(w, dict) and isinstance(w.get("layer"), str) and _is_number(w.get("ratio"))
                  and isinstance(w.get("channels"), list) and all(_is_int(c) for c in w["channels"]))
            if not ok:
                raise SchemeError(f"{source}: malformed weight_layers entry {json.dumps(w)[:120]} (expected layer: "
                                  "name, ratio: number, channels: list of integers)")
            weights.append(WeightUpdate(w["layer"], float(w["ratio"]), tuple(w["channels"])))
        return UpdateScheme(tuple(biases), tuple(weights), head, name)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @staticmethod
    def load(path: str | Path) -> UpdateScheme:
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SchemeError(f"{path}: scheme file not found") from None
        except IsADirectoryError:
            raise SchemeError(f"{path}: is a folder, not a scheme file") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise SchemeError(f"{path}: not valid JSON ({type(e).__name__}: {str(e)[:120]})") from None
        return UpdateScheme.from_dict(doc, str(path))


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_scheme(scheme: UpdateScheme, graph: Graph) -> UpdateScheme:
    """Raise SchemeError unless every layer exists and every ratio/channel list is valid."""
    layers = {n.name: n for n in graph.weighted_nodes()}
    names = ", ".join(list(layers)[:3]) + ", ..."
    if scheme.head not in HEADS:
        raise SchemeError(f"head must be one of {HEADS}, got {scheme.head!r}")
    for name in scheme.bias_layers:
        if name not in layers:
            raise SchemeError(f"bias layer {name!r} is not a conv/linear layer of the model (layers: {names})")
    seen = set()
    for w in scheme.weight_layers:
        if w.layer not in layers:
            raise SchemeError(f"weight layer {w.layer!r} is not a conv/linear layer of the model (layers: {names})")
        if w.layer in seen:
            raise SchemeError(f"weight layer {w.layer!r} listed twice")
        seen.add(w.layer)
        if not (0.0 < w.ratio <= 1.0):
            raise SchemeError(f"layer {w.layer!r}: ratio {w.ratio} is outside (0, 1]")
        out_channels = graph.tensors[layers[w.layer].inputs[1]].shape[0]
        expected = channel_count(out_channels, w.ratio)
        if len(w.channels) != expected:
            raise SchemeError(f"layer {w.layer!r}: ratio {w.ratio} of {out_channels} channels keeps {expected}, "
                              f"but {len(w.channels)} channels are listed")
        if len(set(w.channels)) != len(w.channels) or any(not 0 <= c < out_channels for c in w.channels):
            raise SchemeError(f"layer {w.layer!r}: channels must be distinct indices in [0, {out_channels})")
    return scheme


def channel_count(out_channels: int, ratio: float) -> int:
    return max(1, min(out_channels, math.ceil(out_channels * ratio - 1e-9)))


def select_channels(weight: np.ndarray, ratio: float, criterion: str = "magnitude", seed: int = 0) -> tuple[int, ...]:
    """Kept output channels of an OHWI weight for a sub-tensor update, sorted ascending."""
    out_channels = weight.shape[0]
    k = channel_count(out_channels, ratio)
    norms = np.sqrt(np.sum(weight.reshape(out_channels, -1).astype(np.float64) ** 2, axis=1))
    if criterion == "magnitude":
        order = np.argsort(-norms, kind="stable")
    elif criterion == "smallest":
        order = np.argsort(norms, kind="stable")
    elif criterion == "random":
        order = np.random.default_rng(seed).permutation(out_channels)
    elif criterion == "first":
        order = np.arange(out_channels)
    else:
        raise SchemeError(f"unknown channel criterion {criterion!r}; choose from {CRITERIA}")
    return tuple(sorted(int(c) for c in order[:k]))


def make_scheme(graph: Graph, bias_layers: Iterable[str] = (), weight_ratios: dict[str, float] | None = None,
                head: str = "int8", criterion: str = "magnitude", name: str = "") -> UpdateScheme:
    """Build a checked scheme, choosing and recording kept channels for each weight layer."""
    layers = {n.name: n for n in graph.weighted_nodes()}
    weights = []
    for layer, ratio in (weight_ratios or {}).items():
        if layer not in layers:
            raise SchemeError(f"weight layer {layer!r} is not a conv/linear layer of the model")
        if not (0.0 < ratio <= 1.0):
            raise SchemeError(f"layer {layer!r}: ratio {ratio} is outside (0, 1]")
        w = graph.tensors[layers[layer].inputs[1]].data
        weights.append(WeightUpdate(layer, float(ratio), select_channels(w, ratio, criterion)))
    order = {n: i for i, n in enumerate(layers)}
    weights.sort(key=lambda w: order[w.layer])
    biases = sorted(set(bias_layers), key=lambda n: order.get(n, -1))
    return check_scheme(UpdateScheme(tuple(biases), tuple(weights), head, name), graph)


def trained_tensor_order(scheme: UpdateScheme, graph: Graph) -> list[tuple[str, str]]:
    """(layer, "weight"|"bias") of every trained tensor: layers in execution order, weight
    before bias. The position in this list is the ``tensor_id`` of the rounding rule."""
    weights = {w.layer for w in scheme.weight_layers}
    biases = set(scheme.bias_layers)
    order = []
    for node in graph.weighted_nodes():
        if node.name in weights:
            order.append((node.name, "weight"))
        if node.name in biases:
            order.append((node.name, "bias"))
    return order
