"""A fresh classifier head for transfer to a new task (N classes instead of ImageNet's 1000).

``new_head(graph, num_classes, seed)`` replaces the weights, bias and output quantization of
the graph's last FULLY_CONNECTED node (the classifier) and keeps everything else, including
the classifier's input quantization (an int8 SOFTMAX after the classifier, as .tflite
classifiers end, stays and takes the new number of classes). The new head is, in real numbers, PyTorch's default
``nn.Linear`` initialisation (weights uniform in +-1/sqrt(C), bias 0), stored as the device
stores it:

* weights int8, per-channel symmetric, with a scale that leaves room to grow: a channel's
  largest initial weight maps to 127/``HEADROOM``, so training can double a weight before it
  saturates (there is no float master copy on the device to hold larger values);
* bias int32 zeros (units s_x * s_w[c]);
* logits per-tensor, zero point 0, covering +-``LOGIT_SIGMAS`` standard deviations of the
  initial logits estimated from the input quantization: the pooled features are assumed
  to spread over their int8 range as +-4 sigma, so E[x^2] ~ (range / 8)^2, and
  Var(logit) = C * E[w^2] * E[x^2] with E[w^2] = 1 / (3C) for the uniform init. For the
  zoo's ImageNet heads this rule gives logit scales within 20 % of the published ones.
"""

from __future__ import annotations

import numpy as np

from microtrain import quant
from microtrain.ir import Graph, Op, QParams, Tensor, verify_graph
from microtrain.ir.logits import trailing_softmax

HEADROOM = 2.0
LOGIT_SIGMAS = 8.0


def classifier_node_name(graph: Graph) -> str:
    fcs = [n for n in graph.nodes if n.op == Op.FULLY_CONNECTED]
    if not fcs:
        raise ValueError("graph has no FULLY_CONNECTED classifier to replace")
    return fcs[-1].name


def new_head(graph: Graph, num_classes: int, seed: int = 0) -> Graph:
    """``graph`` with a freshly initialised ``num_classes``-way classifier (see module doc)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    node = graph.node(classifier_node_name(graph))
    x_t, w_t, b_t = (graph.tensors[n] for n in node.inputs)
    y_t = graph.tensors[node.outputs[0]]
    soft = trailing_softmax(graph)
    others = [n.name for n in graph.consumers(y_t.name) if soft is None or n is not soft]
    if others or (y_t.name not in graph.outputs and (soft is None or soft.inputs[0] != y_t.name)):
        raise ValueError(f"classifier output {y_t.name!r} is consumed inside the graph ({', '.join(others)}); "
                         "cannot resize it")
    c = x_t.shape[1]
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(c)
    w_real = rng.uniform(-bound, bound, size=(num_classes, c))
    scales = HEADROOM * np.max(np.abs(w_real), axis=1) / 127.0
    if graph.meta.get("scale_dtype") == "float32":  # a .tflite stores scales as float32 (and TFLM uses those)
        scales = scales.astype(np.float32).astype(np.float64)
    w_q = np.clip(np.round(w_real / scales[:, None]), -127, 127).astype(np.int8)

    lo = x_t.quant.s * (-128 - x_t.quant.z)
    hi = x_t.quant.s * (127 - x_t.quant.z)
    x_rms = (hi - lo) / 8.0
    logit_std = np.sqrt(c * (bound**2 / 3.0) * x_rms**2)
    y_scale = LOGIT_SIGMAS * logit_std / 127.0
    if graph.meta.get("scale_dtype") == "float32":
        y_scale = float(np.float32(y_scale))
    # Sanity: the requantization multiplier must be representable.
    quant.quantize_multipliers(x_t.quant.s * scales / y_scale)

    tensors = dict(graph.tensors)
    tensors[w_t.name] = Tensor(w_t.name, (num_classes, c), "int8", QParams.per_channel(scales), w_q)
    tensors[b_t.name] = Tensor(b_t.name, (num_classes,), "int32", None, np.zeros(num_classes, np.int32))
    tensors[y_t.name] = Tensor(y_t.name, (1, num_classes), "int8", QParams.per_tensor(y_scale, 0))
    if soft is not None and soft.inputs[0] == y_t.name:  # the int8 probabilities follow the logits' size
        p = graph.tensors[soft.outputs[0]]
        tensors[p.name] = Tensor(p.name, (1, num_classes), "int8", p.quant)
    meta = {k: v for k, v in graph.meta.items() if k != "class_names"}  # the old head's class names
    meta["head"] = {"num_classes": int(num_classes), "seed": int(seed), "init": "uniform(+-1/sqrt(C)), bias 0"}
    return verify_graph(graph.replace(tensors=tensors, meta=meta))
