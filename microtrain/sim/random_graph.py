"""Small random int8 graphs (a MobileNet-style block chain) for tests of the simulator and
the trainer: conv -> [pointwise, depthwise, pointwise (+ residual ADD)] x blocks -> global
average pool -> reshape -> fully connected. Node names follow the zoo convention."""

from __future__ import annotations

import numpy as np

from microtrain import quant
from microtrain.ir.graph import Graph, GraphBuilder, QParams, Tensor
from microtrain.ir.ops import Op


def _act(rng: np.random.Generator, name: str, shape: tuple[int, ...], relu6: bool) -> Tensor:
    if relu6:
        return Tensor(name, shape, "int8", QParams.per_tensor(6.0 / 255.0 * rng.uniform(0.5, 1.5), -128))
    return Tensor(name, shape, "int8", QParams.per_tensor(rng.uniform(0.02, 0.08), int(rng.integers(-20, 20))))


def _conv(b: GraphBuilder, rng: np.random.Generator, name: str, x: Tensor, out_c: int, k: int, stride: int,
          groups: int, relu6: bool) -> Tensor:
    _, h, w, c = x.shape
    per_group = c // groups
    real_w = rng.normal(0, 1.0 / np.sqrt(k * k * per_group), size=(out_c, k, k, per_group))
    wq, ws = quant.quantize_weights_per_channel(real_w)
    bq = quant.quantize_bias(rng.normal(0, 0.1, out_c), x.quant.s, ws)
    pad = k // 2
    oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    y = _act(rng, f"{name}.out", (1, oh, ow, out_c), relu6)
    b.add_tensor(Tensor(f"{name}.weight", wq.shape, "int8", QParams.per_channel(ws), wq))
    b.add_tensor(Tensor(f"{name}.bias", (out_c,), "int32", None, bq))
    b.add_tensor(y)
    # A fused ReLU6 whose upper bound sits inside the int8 range, so the clamp mask matters.
    attrs = {"act_min": -128, "act_max": int(rng.integers(60, 128))} if relu6 else {}
    b.add_node(name, Op.CONV2D, [x.name, f"{name}.weight", f"{name}.bias"], [y.name], stride=(stride, stride),
               padding=(pad, pad, pad, pad), groups=groups, **attrs)
    return y


def random_graph(seed: int = 0, resolution: int = 8, channels: int = 3, width: int = 8, blocks: int = 2,
                 classes: int = 5) -> Graph:
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = Tensor("input", (1, resolution, resolution, channels), "int8", QParams.per_tensor(1 / 127.5, 0))
    b.add_input(x)
    h = _conv(b, rng, "first_conv", x, width, 3, 2, 1, True)
    for i in range(blocks):
        expand = width * 2
        stride = 2 if i == 0 else 1
        t = _conv(b, rng, f"blocks.{i}.pointwise1", h, expand, 1, 1, 1, True)
        t = _conv(b, rng, f"blocks.{i}.depthwise", t, expand, 3, stride, expand, True)
        t = _conv(b, rng, f"blocks.{i}.pointwise2", t, width, 1, 1, 1, False)
        if stride == 1:
            y = _act(rng, f"blocks.{i}.residual.out", t.shape, False)
            b.add_tensor(y)
            b.add_node(f"blocks.{i}.residual", Op.ADD, [t.name, h.name], [y.name])
            t = y
        h = t
    pooled = Tensor("pool.out", (1, 1, 1, width), "int8", QParams.per_tensor(h.quant.s * 0.8, h.quant.z))
    b.add_tensor(pooled)
    b.add_node("pool", Op.GLOBAL_AVG_POOL, [h.name], [pooled.name])
    flat = Tensor("flatten.out", (1, width), "int8", pooled.quant)
    b.add_tensor(flat)
    b.add_node("flatten", Op.RESHAPE, [pooled.name], [flat.name], shape=(1, width))
    real_w = rng.normal(0, 1.0 / np.sqrt(width), size=(classes, width))
    wq, ws = quant.quantize_weights_per_channel(real_w)
    b.add_tensor(Tensor("classifier.weight", wq.shape, "int8", QParams.per_channel(ws), wq))
    b.add_tensor(Tensor("classifier.bias", (classes,), "int32", None,
                        quant.quantize_bias(rng.normal(0, 0.1, classes), flat.quant.s, ws)))
    logits = Tensor("classifier.out", (1, classes), "int8", QParams.per_tensor(0.05, 0))
    b.add_tensor(logits)
    b.add_node("classifier", Op.FULLY_CONNECTED, [flat.name, "classifier.weight", "classifier.bias"], [logits.name])
    return b.build([logits.name], meta={"preprocess": {"resolution": [resolution, resolution],
                                                       "channels": channels, "range": [-1.0, 1.0]}})


def random_inputs(graph: Graph, n: int, seed: int = 0) -> np.ndarray:
    shape = graph.tensors[graph.inputs[0]].shape
    return np.random.default_rng(seed).integers(-128, 128, size=(n,) + shape[1:]).astype(np.int8)
