"""Pass 1: inference graph + UpdateScheme -> forward + loss graph with the training inputs.

Drops an int8 SOFTMAX that ends the model (``ir/logits.py``; ``meta["training"]["softmax"]``
keeps it for the inference entry point), appends DEQUANTIZE(logits) and
SOFTMAX_CROSS_ENTROPY, adds the graph inputs ``label``
(int32 [1]) and ``lr`` (float32 [1]) -- or, with ``loss="mse"``, DEQUANTIZE(output) and
MEAN_SQUARED_ERROR against the model's own input, and ``lr`` only -- and records in ``meta["training"]`` what the later
passes need: the trained tensors in *tensor_id order* (layers in execution order, weight
before bias: the order the stochastic rounding counter and ``mt_trainable`` use), the kept
channels of each weight, the QAS switch, the rounding mode and the optimizer state (samples
accumulated per update, momentum).
"""

from __future__ import annotations

from microtrain.ir.graph import Graph, Node, Tensor
from microtrain.ir.logits import logits_graph, trailing_softmax
from microtrain.ir.ops import LOSS_OPS, Op
from microtrain.ir.verify import verify_graph
from microtrain.runtime.rounding import ROUNDINGS
from microtrain.scheme import UpdateScheme, check_scheme, trained_tensor_order

LOSSES = ("cross_entropy", "mse")
"""The losses the device computes: softmax cross-entropy (classification), mean squared error of an
autoencoder's reconstruction of its input (anomaly detection)."""


class CompileError(ValueError):
    """The model, scheme or options cannot be compiled; the message says why and what to change."""


def forward_end(graph: Graph) -> int:
    """Index of the first backward node: the forward ends with the loss node this pass appends
    (a graph without one, an inference graph, is all forward: its length)."""
    return next((i + 1 for i, n in enumerate(graph.nodes) if n.op in LOSS_OPS), len(graph.nodes))


def trained_tensors(graph: Graph, scheme: UpdateScheme) -> list[dict]:
    """The trained tensors in tensor_id order (``scheme.trained_tensor_order``), each {name, layer, kind, channels}."""
    out = []
    for layer, kind in trained_tensor_order(scheme, graph):
        node = graph.node(layer)
        if kind == "weight":
            out.append({"name": node.inputs[1], "layer": layer, "kind": "weight",
                        "channels": list(scheme.weight_update(layer).channels)})
        else:
            n_out = graph.tensors[node.inputs[2]].shape[0]
            out.append({"name": node.inputs[2], "layer": layer, "kind": "bias", "channels": list(range(n_out))})
    return out


def build_training_graph(graph: Graph, scheme: UpdateScheme, rounding: str = "stochastic", seed: int = 0,
                         qas: bool = True, accumulate: int = 1, momentum: float = 0.0,
                         loss: str = "cross_entropy") -> Graph:
    """``loss``: "cross_entropy" (int8 logits [1, K] against the label) or "mse" (the reconstruction
    loss of an autoencoder: the dequantized output against the model's own int8 input, no label)."""
    soft = trailing_softmax(graph)
    graph = logits_graph(graph)  # an int8 SOFTMAX ending the model is not trained through: the loss takes the logits
    try:
        check_scheme(scheme, graph)
    except ValueError as e:
        raise CompileError(f"the scheme does not fit the model: {e}") from None
    if scheme.head != "int8":
        raise CompileError(f"scheme head {scheme.head!r} is not supported by the compiler yet; "
                           "use an int8 head (scheme 'head': 'int8')")
    if rounding not in ROUNDINGS:
        raise CompileError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise CompileError("training needs a graph with one input and one output (the logits)")
    if not scheme.updated_layers():
        raise CompileError("the scheme updates nothing; name at least one bias or weight layer")
    if loss not in LOSSES:
        raise CompileError(f"loss {loss!r} is not one the device computes; choose {' or '.join(LOSSES)}")
    logits = graph.tensors[graph.outputs[0]]
    x = graph.tensors[graph.inputs[0]]
    if loss == "mse" and (logits.dtype != "int8" or logits.size != x.size or x.dtype != "int8"):
        raise CompileError(f"--loss mse reconstructs the input: the output {logits.name!r} "
                           f"({logits.dtype}{list(logits.shape)}) must be int8 of the input's size "
                           f"({x.dtype}{list(x.shape)})")
    if logits.dtype != "int8" or len(logits.shape) != 2:
        raise CompileError(f"the model output {logits.name!r} must be int8 logits [1, K], is "
                           f"{logits.dtype}{list(logits.shape)}")
    for node in graph.nodes:
        if node.op == Op.FULLY_CONNECTED and node.inputs[1] == node.inputs[0]:
            raise CompileError(f"node {node.name!r} uses a tensor as both input and weight")
    tensors = dict(graph.tensors)
    tensors["logits.f32"] = Tensor("logits.f32", logits.shape, "float32")
    tensors["lr"] = Tensor("lr", (1,), "float32")
    tensors["loss"] = Tensor("loss", (1,), "float32")
    nodes = list(graph.nodes) + [Node("logits_dequantize", Op.DEQUANTIZE, (logits.name,), ("logits.f32",))]
    if loss == "mse":
        nodes.append(Node("loss", Op.MEAN_SQUARED_ERROR, ("logits.f32", x.name), ("loss",)))
        inputs = graph.inputs + ("lr",)
    else:
        tensors["label"] = Tensor("label", (1,), "int32")
        nodes.append(Node("loss", Op.SOFTMAX_CROSS_ENTROPY, ("logits.f32", "label"), ("loss",)))
        inputs = graph.inputs + ("label", "lr")
    meta = dict(graph.meta)
    meta["training"] = {"scheme": scheme.to_dict(), "trained": trained_tensors(graph, scheme),
                        "rounding": rounding, "seed": int(seed), "qas": bool(qas), "logits": logits.name,
                        "accumulate": int(accumulate), "momentum": float(momentum), "loss": loss}
    if soft is not None:  # inference still ends in it (mt_infer): its parameters, on the logits
        meta["training"]["softmax"] = {"beta": float(soft.attrs.get("beta", 1.0)), "name": soft.name}
    out = graph.replace(tensors=tensors, nodes=tuple(nodes), inputs=inputs,
                        outputs=("loss",), meta=meta)
    return verify_graph(out)

