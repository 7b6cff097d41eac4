"""Small random int8 graphs shaped like the MCU-zoo models, for compiler tests and examples.

``toy_mbnet`` builds first_conv -> inverted-residual blocks (pointwise1, depthwise,
pointwise2, residual ADD) -> pool -> flatten -> classifier, with the zoo's node names.
Activation scales are calibrated on a random input with torch (float conv of the
dequantized operands), so activations use their int8 range instead of saturating.
"""

from __future__ import annotations

import numpy as np
import torch

from microtrain import quant
from microtrain.interp.reference import EVAL_RULES
from microtrain.ir.graph import Graph, GraphBuilder, Node, QParams, Tensor
from microtrain.ir.ops import Op
from microtrain.ir.verify import conv_output_hw, verify_graph


class _Builder:
    def __init__(self, rng: np.random.Generator, x: np.ndarray, x_t: Tensor) -> None:
        self.b = GraphBuilder()
        self.rng = rng
        self.b.add_input(x_t)
        self.values = {x_t.name: x}

    def _run(self, node: Node) -> None:
        g = Graph(self.b.tensors, tuple(self.b.nodes), tuple(self.b.inputs), ())
        self.values.update({n: t.data for n, t in self.b.tensors.items() if t.is_const})
        for name, arr in zip(node.outputs, EVAL_RULES[node.op](node, g, self.values), strict=True):
            self.values[name] = arr

    def conv(self, name: str, x: str, out_c: int, k: int, stride: int, groups: int, relu6: bool) -> str:
        x_t = self.b.tensors[x]
        _, h, w, c = x_t.shape
        per_group = c // groups
        w_real = self.rng.normal(0, 1.0 / np.sqrt(k * k * per_group), (out_c, k, k, per_group))
        wq, ws = quant.quantize_weights_per_channel(w_real)
        b_real = self.rng.normal(0, 0.1, out_c)
        bq = quant.quantize_bias(b_real, x_t.quant.s, ws)
        pad = (k // 2, k // 2, k // 2, k // 2)
        xr = quant.dequantize(self.values[x], x_t.quant.s, x_t.quant.z)
        pre = torch.nn.functional.conv2d(
            torch.tensor(xr).permute(0, 3, 1, 2), torch.tensor(wq * ws[:, None, None, None]).permute(0, 3, 1, 2),
            torch.tensor(bq * x_t.quant.s * ws), stride=stride, padding=k // 2, groups=groups)
        # ReLU-like layers: a range a little below the observed maximum, so both ends clamp.
        lo, hi = (0.0, 0.8 * float(pre.max())) if relu6 else (float(pre.min()), float(pre.max()))
        s_y, z_y = quant.choose_activation_qparams(lo, hi)
        oh, ow = conv_output_hw(h, w, k, k, (stride, stride), pad)
        wt = self.b.add_tensor(Tensor(f"{name}.weight", wq.shape, "int8", QParams.per_channel(ws), wq))
        bt = self.b.add_tensor(Tensor(f"{name}.bias", (out_c,), "int32", None, bq))
        y = self.b.add_tensor(Tensor(f"{name}.out", (1, oh, ow, out_c), "int8", QParams.per_tensor(s_y, z_y)))
        act = (z_y, 127) if relu6 else (-128, 127)
        node = self.b.add_node(name, Op.CONV2D, (x, wt, bt), (y,), stride=(stride, stride), padding=pad,
                               groups=groups, act_min=act[0], act_max=act[1])
        self._run(node)
        return y

    def add(self, name: str, a: str, b: str) -> str:
        a_t, b_t = self.b.tensors[a], self.b.tensors[b]
        real = quant.dequantize(self.values[a], a_t.quant.s, a_t.quant.z) + quant.dequantize(
            self.values[b], b_t.quant.s, b_t.quant.z)
        s, z = quant.choose_activation_qparams(real.min(), real.max())
        y = self.b.add_tensor(Tensor(f"{name}.out", a_t.shape, "int8", QParams.per_tensor(s, z)))
        self._run(self.b.add_node(name, Op.ADD, (a, b), (y,), act_min=-128, act_max=127))
        return y

    def pool_fc(self, x: str, classes: int) -> str:
        x_t = self.b.tensors[x]
        c = x_t.shape[3]
        p = self.b.add_tensor(Tensor("pool.out", (1, 1, 1, c), "int8", x_t.quant))
        self._run(self.b.add_node("pool", Op.GLOBAL_AVG_POOL, (x,), (p,)))
        f = self.b.add_tensor(Tensor("flatten.out", (1, c), "int8", x_t.quant))
        self._run(self.b.add_node("flatten", Op.RESHAPE, (p,), (f,), shape=(1, c)))
        w_real = self.rng.normal(0, 1.0 / np.sqrt(c), (classes, c))
        wq, ws = quant.quantize_weights_per_channel(w_real)
        bq = quant.quantize_bias(self.rng.normal(0, 0.1, classes), x_t.quant.s, ws)
        xr = quant.dequantize(self.values[f], x_t.quant.s, x_t.quant.z)
        pre = xr @ (wq * ws[:, None]).T + bq * x_t.quant.s * ws
        s_y, z_y = quant.choose_activation_qparams(pre.min() - 1, pre.max() + 1)
        wt = self.b.add_tensor(Tensor("classifier.weight", wq.shape, "int8", QParams.per_channel(ws), wq))
        bt = self.b.add_tensor(Tensor("classifier.bias", (classes,), "int32", None, bq))
        y = self.b.add_tensor(Tensor("classifier.out", (1, classes), "int8", QParams.per_tensor(s_y, z_y)))
        self._run(self.b.add_node("classifier", Op.FULLY_CONNECTED, (f, wt, bt), (y,), act_min=-128, act_max=127))
        return y


def toy_mbnet(seed: int = 0, size: int = 8, in_channels: int = 3, classes: int = 4,
              blocks: tuple[tuple[int, int, int], ...] = ((2, 8, 1), (3, 8, 1)), first_channels: int = 8) -> Graph:
    """A verified int8 graph: blocks are (expand ratio, out channels, stride)."""
    rng = np.random.default_rng(seed)
    x_t = Tensor("input", (1, size, size, in_channels), "int8", QParams.per_tensor(1 / 127.5, 0))
    x = rng.integers(-128, 128, x_t.shape).astype(np.int8)
    m = _Builder(rng, x, x_t)
    h = m.conv("first_conv", "input", first_channels, 3, 1, 1, True)
    c = first_channels
    for i, (expand, out_c, stride) in enumerate(blocks):
        inp = h
        mid = c * expand
        if expand != 1:
            h = m.conv(f"blocks.{i}.pointwise1", h, mid, 1, 1, 1, True)
        h = m.conv(f"blocks.{i}.depthwise", h, mid, 3, stride, mid, True)
        h = m.conv(f"blocks.{i}.pointwise2", h, out_c, 1, 1, 1, False)
        if stride == 1 and out_c == c:
            h = m.add(f"blocks.{i}.residual", h, inp)
        c = out_c
    y = m.pool_fc(h, classes)
    meta = {"preprocess": {"resolution": [size, size], "channels": in_channels, "range": [-1.0, 1.0]},
            "name": f"toy_mbnet(seed={seed})"}
    return verify_graph(m.b.build([y], meta))
