"""Batched torch execution and differentiation of an int8 Graph (the accuracy predictor).

``Simulator(graph, scheme)`` holds the int codes of every weighted layer (int64 tensors
holding int8 weights / int32 biases; they are the model, there is no float copy) and runs
the graph node by node with ``SIM_RULES``. Forward is bit-exact with
``interp.reference.run_graph`` at any batch size (each sample is independent).

Backpropagation stops at the earliest updated layer of the scheme: every node before it
(the frozen *prefix*) runs integer-only under ``no_grad``, and ``prefix()`` returns the
tensors live across that cut so callers can cache them when the prefix never changes.

``grad_dtype`` int8 / int16 holds the error of every conv/FC layer in the backward as
integer codes with a power-of-two scale per sample (``runtime/grad_quant.py``, the one
statement of that rule); fp32 (the default) keeps float errors.

Heads (``scheme.head``): ``int8`` keeps the graph's classifier and takes the dequantized
int8 logits; ``fp32`` replaces the classifier (the last weighted layer, whose output must
be the graph output) by a float linear layer on its dequantized input features,
initialised from the dequantized int8 classifier and trained in float.

An int8 SOFTMAX ending the graph (imported .tflite classifiers) is not trained through: the
simulator trains ``ir.logits.logits_graph`` (the logits are the output) and keeps the whole
graph for ``infer_codes`` and ``to_graph``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch

from microtrain import quant
from microtrain.ir.graph import Graph, QParams
from microtrain.ir.logits import logits_graph
from microtrain.ir.verify import verify_graph
from microtrain.runtime.grad_quant import error_bits
from microtrain.scheme import UpdateScheme, check_scheme
from microtrain.sim.ops import SIM_RULES, Act, LayerParams, real_weights, to_codes


class Simulator:
    def __init__(self, graph: Graph, scheme: UpdateScheme | None = None, grad_dtype: str = "fp32") -> None:
        verify_graph(graph)
        self.grad_dtype = grad_dtype
        bits = error_bits(grad_dtype)
        self.full_graph = graph  # with an int8 SOFTMAX ending it, if it has one (inference, export)
        self.graph = graph = logits_graph(graph)  # what trains: its output is the logits
        self.scheme = check_scheme(scheme or UpdateScheme(), graph)
        self.layers = graph.weighted_nodes()
        self.params: dict[str, LayerParams] = {
            n.name: LayerParams(to_codes(graph.tensors[n.inputs[1]].data), to_codes(graph.tensors[n.inputs[2]].data),
                                error_bits=bits)
            for n in self.layers}
        self.classifier = self.layers[-1] if self.layers else None
        self.head_w: torch.Tensor | None = None
        self.head_b: torch.Tensor | None = None
        if self.scheme.head == "fp32":
            c = self.classifier
            if c is None or c.outputs[0] not in graph.outputs:
                raise ValueError("an fp32 head needs the last conv/linear layer to produce the graph output")
            w, b = real_weights(graph, c, self.params[c.name].w_q, self.params[c.name].b_q)
            self.head_w, self.head_b = w.reshape(w.shape[0], -1).clone(), b.clone()
        earliest = self.scheme.earliest_layer(graph)
        if self.scheme.head == "fp32" and earliest in (None, self.classifier.name):
            earliest = self.classifier.name
        names = [n.name for n in graph.nodes]
        self.cut = names.index(earliest) if earliest is not None else len(names)

    # --- the frozen prefix ---------------------------------------------------------------
    def live_at_cut(self) -> list[str]:
        """Tensors computed before the cut (or graph inputs) and read at or after it."""
        before = set(self.graph.inputs)
        for node in self.graph.nodes[:self.cut]:
            before.update(node.outputs)
        needed: list[str] = []
        for node in self.graph.nodes[self.cut:]:
            for name in node.inputs:
                if name in before and name not in needed:
                    needed.append(name)
        for name in self.graph.outputs:
            if name in before and name not in needed:
                needed.append(name)
        return needed

    def prefix(self, x_q: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """Integer codes of the tensors live at the cut, for a batch of int8 NHWC inputs."""
        env = self._feed(x_q)
        with torch.no_grad():
            self._run(env, self.graph.nodes[:self.cut])
        return {name: env[name].q for name in self.live_at_cut()}

    # --- forward ------------------------------------------------------------------------
    def _feed(self, x_q: np.ndarray | torch.Tensor) -> dict[str, Act]:
        (name,) = self.graph.inputs
        t = self.graph.tensors[name]
        q = x_q if isinstance(x_q, torch.Tensor) else to_codes(x_q)
        return {name: Act(q.to(torch.int64), t.quant.s, t.quant.z)}

    def _run(self, env: dict[str, Act], nodes) -> None:
        for node in nodes:
            if self.head_w is not None and node is self.classifier:
                break
            rule = SIM_RULES.get(node.op)
            if rule is None:
                raise NotImplementedError(f"the simulator has no rule for op {node.op.value} (node {node.name!r})")
            for name, act in zip(node.outputs, rule(node, self.graph, env, self.params), strict=True):
                env[name] = act

    def attach_grads(self, trained: list[tuple[str, str]]) -> None:
        """Make fp32 leaves (real weights/biases) for the trained tensors; clears old ones."""
        for p in self.params.values():
            p.w_real = p.b_real = p.w_rows = None
        for layer, kind in trained:
            p = self.params[layer]
            w, b = real_weights(self.graph, self.graph.node(layer), p.w_q, p.b_q)
            if kind == "weight":
                p.w_real = w.requires_grad_()
                p.w_rows = list(self.scheme.weight_update(layer).channels)  # the kept rows: only theirs are computed
            else:
                p.b_real = b.requires_grad_()

    def forward(self, x_q: np.ndarray | torch.Tensor | None = None,
                cached: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, Act]]:
        """Logits (float32 [N, K]) and all activations. Give ``x_q`` or ``cached`` (from ``prefix``)."""
        if cached is None:
            env = self._feed(x_q)
            with torch.no_grad():
                self._run(env, self.graph.nodes[:self.cut])
        else:
            env = {}
            for name, q in cached.items():
                t = self.graph.tensors[name]
                env[name] = Act(q, t.quant.s, t.quant.z)
        self._run(env, self.graph.nodes[self.cut:])
        if self.head_w is not None:
            feats = env[self.classifier.inputs[0]].real
            logits = feats.reshape(feats.shape[0], -1) @ self.head_w.t() + self.head_b
            return logits, env
        out = env[self.graph.outputs[0]]
        return out.real.reshape(out.real.shape[0], -1), env

    def infer_codes(self, x_q: np.ndarray) -> dict[str, np.ndarray]:
        """Integer forward of every tensor (no autograd), as numpy arrays in the IR dtypes."""
        env = self._feed(x_q)
        with torch.no_grad():
            for node in self.full_graph.nodes:
                for name, act in zip(node.outputs, SIM_RULES[node.op](node, self.full_graph, env, self.params),
                                     strict=True):
                    env[name] = act
        out = {}
        for name, act in env.items():
            t = self.full_graph.tensors[name]
            if t.dtype == "float32":
                out[name] = act.real.detach().numpy()
            else:
                out[name] = act.q.numpy().astype(t.dtype)
        return out

    def _quantized_head(self, logit_range: float | None) -> dict:
        c = self.classifier
        x_t, w_t, b_t = (self.graph.tensors[n] for n in c.inputs)
        y_t = self.graph.tensors[c.outputs[0]]
        w = self.head_w.detach().double().numpy().reshape(w_t.shape)
        wq, scales = quant.quantize_weights_per_channel(w)
        rng = logit_range if logit_range is not None else y_t.quant.s * (127 - y_t.quant.z)
        y_scale = max(rng, 1e-6) / 127.0
        if self.graph.meta.get("scale_dtype") == "float32":  # a .tflite model: scales as the file stores them
            scales = scales.astype(np.float32).astype(np.float64)
            wq = np.clip(np.round(w / scales.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127).astype(np.int8)
            y_scale = float(np.float32(y_scale))
        bq = quant.quantize_bias(self.head_b.detach().double().numpy(), x_t.quant.s, scales)
        return {w_t.name: dataclasses.replace(w_t, quant=QParams.per_channel(scales), data=wq),
                b_t.name: b_t.with_data(bq),
                y_t.name: dataclasses.replace(y_t, quant=QParams.per_tensor(y_scale, 0))}

    # --- export -------------------------------------------------------------------------
    def to_graph(self, logit_range: float | None = None) -> Graph:
        """The graph with the current int8 weights / int32 biases.

        An fp32 head is quantized into the classifier: per-channel symmetric int8 weights,
        int32 bias on s_x * s_w[c], and logits per-tensor symmetric covering +-``logit_range``
        (default: the classifier's present output range).
        """
        tensors = dict(self.full_graph.tensors)
        if self.head_w is not None:
            tensors.update(self._quantized_head(logit_range))
        for node in self.layers:
            if self.head_w is not None and node is self.classifier:
                continue
            p = self.params[node.name]
            for name, codes in ((node.inputs[1], p.w_q), (node.inputs[2], p.b_q)):
                t = tensors[name]
                tensors[name] = t.with_data(codes.numpy().astype(t.dtype))
        return self.full_graph.replace(tensors=tensors)



