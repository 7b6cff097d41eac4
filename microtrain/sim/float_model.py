"""The fp32 baseline: the graph's trained suffix as a float model (the "fp32 SGD-M" row).

Weights and biases are the dequantized int8 ones, trained in float32 by a torch optimizer;
activations are not quantized: each CONV2D/FC/ADD keeps its float value, clamped to the
real range of its fused activation [s_y (act_min - z_y), s_y (act_max - z_y)] (the ReLU6 of
the zoo models), except the classifier whose logits are left unclamped. The frozen prefix
stays the int8 graph (its output is dequantized), since only the suffix is trained.
Sub-tensor schemes: gradients of channels outside the kept ones are zeroed before a step.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from microtrain.ir.graph import Graph
from microtrain.ir.ops import Op
from microtrain.scheme import trained_tensor_order
from microtrain.sim.ops import conv_float, real_weights
from microtrain.sim.simulator import Simulator


class FloatModel:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.graph: Graph = sim.graph
        self.weights: dict[str, list[torch.Tensor]] = {}
        self.order = trained_tensor_order(sim.scheme, sim.graph)
        trained = set(self.order)
        for node in self.graph.nodes[sim.cut:]:
            if node.op in (Op.CONV2D, Op.FULLY_CONNECTED):
                p = sim.params[node.name]
                w, b = real_weights(self.graph, node, p.w_q, p.b_q)
                w.requires_grad_((node.name, "weight") in trained)
                b.requires_grad_((node.name, "bias") in trained)
                self.weights[node.name] = [w, b]
        self.masks: dict[torch.Tensor, torch.Tensor] = {}
        for wu in sim.scheme.weight_layers:
            w = self.weights[wu.layer][0]
            mask = torch.zeros(w.shape[0])
            mask[list(wu.channels)] = 1.0
            self.masks[w] = mask.view((-1,) + (1,) * (w.dim() - 1))

    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in self.weights.values() for t in pair if t.requires_grad]

    def mask_grads(self) -> None:
        for w, mask in self.masks.items():
            if w.grad is not None:
                w.grad.mul_(mask)

    def forward(self, cached: Mapping[str, torch.Tensor]) -> torch.Tensor:
        g = self.graph
        real: dict[str, torch.Tensor] = {}
        for name, q in cached.items():
            t = g.tensors[name]
            real[name] = ((q.to(torch.float64) - t.quant.z) * t.quant.s).to(torch.float32)
        classifier = self.sim.classifier
        for node in g.nodes[self.sim.cut:]:
            x = real[node.inputs[0]]
            if node.op in (Op.CONV2D, Op.FULLY_CONNECTED):
                y = conv_float(node, x, *self.weights[node.name])
            elif node.op is Op.ADD:
                y = x + real[node.inputs[1]]
            elif node.op is Op.GLOBAL_AVG_POOL:
                y = x.mean(dim=(1, 2), keepdim=True)
            elif node.op is Op.RESHAPE:
                real[node.outputs[0]] = x.reshape((-1,) + tuple(node.attrs["shape"])[1:])
                continue
            elif node.op is Op.DEQUANTIZE:
                real[node.outputs[0]] = x
                continue
            else:
                raise NotImplementedError(f"float model: no rule for {node.op.value}")
            if node is not classifier and node.op is not Op.GLOBAL_AVG_POOL:
                yt = g.tensors[node.outputs[0]]
                lo = yt.quant.s * (node.attrs.get("act_min", -128) - yt.quant.z)
                hi = yt.quant.s * (node.attrs.get("act_max", 127) - yt.quant.z)
                y = torch.clamp(y, lo, hi)
            real[node.outputs[0]] = y
        out = real[g.outputs[0]]
        return out.reshape(out.shape[0], -1)

    def write_back(self) -> None:
        """Quantize the trained float tensors back onto the int8/int32 codes (same scales)."""
        for layer, kind in self.order:
            node = self.graph.node(layer)
            x_t, w_t, _ = (self.graph.tensors[n] for n in node.inputs)
            s_w = torch.from_numpy(w_t.quant.scales())
            p = self.sim.params[layer]
            with torch.no_grad():
                if kind == "weight":
                    w = self.weights[layer][0].to(torch.float64)
                    p.w_q.copy_(torch.clamp(torch.round(w / s_w.view((-1,) + (1,) * (w.dim() - 1))), -127, 127))
                else:
                    b = self.weights[layer][1].to(torch.float64)
                    p.b_q.copy_(torch.clamp(torch.round(b / (s_w * x_t.quant.s)), -(2**31), 2**31 - 1))
