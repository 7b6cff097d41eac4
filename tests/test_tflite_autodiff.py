"""Gradients through the ops of imported .tflite models against torch.autograd.

The compiled training graph (VJP rules, evaluated by the reference training interpreter)
and the torch simulator must give the gradients torch.autograd computes on the dequantized
float model with the straight-through estimator (rounding has derivative 1, a clamp its
mask): through average pools (TFLM's divisor: the window's pixels inside the image), max
pools (torch's own max_pool2d picks the maximum), PAD, CONCAT, the TFLM mean, reshapes,
fully connected chains, non-square kernels and asymmetric padding -- on the real converter
outputs of tests/fixtures/tflite and on random window geometries.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tflite_oracle import fixture_path

from microtrain import quant
from microtrain.compiler.build_training_graph import build_training_graph
from microtrain.compiler.differentiate import differentiate
from microtrain.frontend.heads import new_head
from microtrain.frontend.tflite import import_tflite
from microtrain.interp.reference import run_graph
from microtrain.interp.training import run_training_graph
from microtrain.ir import GraphBuilder, Op, QParams, Tensor, verify_graph
from microtrain.ir.logits import logits_graph
from microtrain.scheme import make_scheme
from microtrain.sim.simulator import Simulator


def torch_grads(graph, x, label):
    """d loss / d (every real weight and bias), by torch.autograd in float64 with the STE."""
    graph = logits_graph(graph)
    vals = run_graph(graph, {graph.inputs[0]: x}, keep_all=True)
    t, params = {}, {}

    def deq(name):
        q = graph.tensors[name].quant
        return torch.tensor(quant.dequantize(vals[name], q.s, q.z))

    def ste(node, pre, masked=True):
        y = node.outputs[0]
        yq = vals[y].astype(np.int32)
        lo, hi = node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)
        mask = torch.tensor((yq > lo) & (yq < hi)) if masked else 1.0
        return deq(y) + (pre - pre.detach()) * mask

    def nchw_padded(name, node, value=0.0):
        top, left, bottom, right = node.attrs["padding"]
        return F.pad(t[name].permute(0, 3, 1, 2), (left, right, top, bottom), value=value)

    t[graph.inputs[0]] = deq(graph.inputs[0])
    for node in graph.nodes:
        ins = node.inputs
        if node.op in (Op.CONV2D, Op.FULLY_CONNECTED):
            xt, wt = graph.tensors[ins[0]], graph.tensors[ins[1]]
            ws = wt.quant.scales()
            w = torch.tensor(wt.data * ws.reshape((-1,) + (1,) * (wt.data.ndim - 1)), requires_grad=True)
            b = torch.tensor(graph.tensors[ins[2]].data * xt.quant.s * ws, requires_grad=True)
            params[ins[1]], params[ins[2]] = w, b
            if node.op is Op.CONV2D:
                pre = F.conv2d(nchw_padded(ins[0], node), w.permute(0, 3, 1, 2), b, stride=tuple(node.attrs["stride"]),
                               groups=node.attrs["groups"]).permute(0, 2, 3, 1)
            else:
                pre = t[ins[0]] @ w.T + b
            t[node.outputs[0]] = ste(node, pre)
        elif node.op is Op.ADD:
            t[node.outputs[0]] = ste(node, t[ins[0]] + t[ins[1]])
        elif node.op is Op.GLOBAL_AVG_POOL:
            t[node.outputs[0]] = ste(node, t[ins[0]].mean(dim=(1, 2), keepdim=True), masked=False)
        elif node.op is Op.AVG_POOL2D:
            fh, fw = node.attrs["filter"]
            sums = F.avg_pool2d(nchw_padded(ins[0], node), (fh, fw), node.attrs["stride"], divisor_override=1)
            ones = torch.ones_like(t[ins[0]][..., :1]).permute(0, 3, 1, 2)
            counts = F.avg_pool2d(F.pad(ones, (node.attrs["padding"][1], node.attrs["padding"][3],
                                               node.attrs["padding"][0], node.attrs["padding"][2])),
                                  (fh, fw), node.attrs["stride"], divisor_override=1)
            narrow = (node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)) != (-128, 127)
            t[node.outputs[0]] = ste(node, (sums / counts).permute(0, 2, 3, 1), masked=narrow)
        elif node.op is Op.MAX_POOL2D:
            pre = F.max_pool2d(nchw_padded(ins[0], node, float("-inf")), tuple(node.attrs["filter"]),
                               tuple(node.attrs["stride"])).permute(0, 2, 3, 1)
            narrow = (node.attrs.get("act_min", -128), node.attrs.get("act_max", 127)) != (-128, 127)
            t[node.outputs[0]] = ste(node, pre, masked=narrow)
        elif node.op is Op.PAD:
            flat = [int(v) for pair in reversed(node.attrs["pads"]) for v in pair]
            t[node.outputs[0]] = ste(node, F.pad(t[ins[0]], flat, value=0.0), masked=False)
        elif node.op is Op.CONCAT:
            t[node.outputs[0]] = torch.cat([t[i] for i in ins], dim=node.attrs["axis"])
        elif node.op is Op.RESHAPE:
            t[node.outputs[0]] = t[ins[0]].reshape(node.attrs["shape"])
        else:
            raise AssertionError(f"no torch replay of {node.op}")
    loss = F.cross_entropy(t[graph.outputs[0]], torch.tensor([int(label)]))
    loss.backward()
    return {k: v.grad.numpy() for k, v in params.items()}, float(loss.detach())


def compiled_grads(graph, scheme, x, label):
    g = differentiate(build_training_graph(graph, scheme))
    vals = run_training_graph(g, {"input": x, "label": np.array([label], np.int32),
                                  "lr": np.array([0.0], np.float32)})
    return {p: vals[d] for p, d in g.meta["training"]["grads"].items()}, float(vals["loss"][0])


def sim_grads(graph, scheme, x, label):
    sim = Simulator(graph, scheme)
    sim.attach_grads([(n, k) for n in scheme.updated_layers() for k in ("weight", "bias")
                      if (k == "bias" and n in scheme.bias_layers) or (k == "weight" and scheme.weight_update(n))])
    logits, _ = sim.forward(x)
    loss = F.cross_entropy(logits, torch.tensor([int(label)]))
    loss.backward()
    out = {}
    for node in sim.layers:
        p = sim.params[node.name]
        if p.w_real is not None:
            out[node.inputs[1]] = p.w_real.grad.numpy()
        if p.b_real is not None:
            out[node.inputs[2]] = p.b_real.grad.numpy()
    return out, float(loss.detach())


# Losses: the training graph's loss is float32 (log of a sum of mt_expf), torch's float64: a loss near
# zero (a confident correct logit) carries float32's absolute error, ~1e-7, hence abs=1e-6 besides rel.


def _check(ours, ref, what):
    assert set(ours) == set(ref), what
    for name in ref:
        scale = max(np.abs(ref[name]).max(), 1e-12)
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-3, atol=1e-4 * scale, err_msg=f"{what}: {name}")


@pytest.mark.parametrize("name", ["ops_pool_pad", "ops_per_tensor", "fashion_mnist_cnn", "kws_ds_cnn", "ic_resnet8"])
def test_fixture_gradients_match_torch(name):
    graph = import_tflite(fixture_path(name))
    k = graph.tensors[graph.outputs[0]].shape[-1]
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, bias_layers=names, weight_ratios=dict.fromkeys(names, 1.0))
    rng = np.random.default_rng(7)
    for _ in range(2):
        x = rng.integers(-128, 128, graph.tensors["input"].shape).astype(np.int8)
        label = int(rng.integers(0, k))
        ref, ref_loss = torch_grads(graph, x, label)
        ours, loss = compiled_grads(graph, scheme, x, label)
        assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
        _check(ours, ref, f"{name} compiled")
        sim, sim_loss = sim_grads(graph, scheme, x, label)
        assert sim_loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
        _check(sim, ref, f"{name} simulator")


def test_new_head_on_an_imported_classifier_keeps_its_softmax():
    graph = new_head(import_tflite(fixture_path("kws_ds_cnn")), 5, seed=1)
    assert graph.nodes[-1].op is Op.SOFTMAX and graph.tensors[graph.outputs[0]].shape == (1, 5)
    x = np.random.default_rng(0).integers(-128, 128, graph.tensors["input"].shape).astype(np.int8)
    out = run_graph(graph, {"input": x})[graph.outputs[0]]
    assert out.shape == (1, 5) and out.dtype == np.int8
    training = build_training_graph(graph, make_scheme(graph, ["fc10"], {}))
    assert Op.SOFTMAX not in {n.op for n in training.nodes}
    assert training.meta["training"]["logits"] == "fc10.out"


def _window_graph(seed, op, filt, stride, padding, act):
    """input -> 1x1 conv (trained) -> op -> reshape -> fc (trained): a random window geometry."""
    rng = np.random.default_rng(seed)
    h, w, c = int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3
    b = GraphBuilder()
    b.add_input(Tensor("input", (1, h, w, 2), "int8", QParams.per_tensor(0.02, -3)))
    b.add_tensor(Tensor("conv.weight", (c, 1, 1, 2), "int8", QParams.per_channel([0.01, 0.02, 0.015]),
                        rng.integers(-127, 128, (c, 1, 1, 2)).astype(np.int8)))
    b.add_tensor(Tensor("conv.bias", (c,), "int32", None, rng.integers(-200, 200, c).astype(np.int32)))
    q = QParams.per_tensor(0.01, 5)
    b.add_tensor(Tensor("conv.out", (1, h, w, c), "int8", q))
    b.add_node("conv", Op.CONV2D, ("input", "conv.weight", "conv.bias"), ("conv.out",), stride=(1, 1),
               padding=(0, 0, 0, 0), groups=1)
    if op is Op.PAD:
        pads = ((0, 0), (padding[0], padding[2]), (padding[1], padding[3]), (1, 0))
        shape = (1, h + padding[0] + padding[2], w + padding[1] + padding[3], c + 1)
        attrs = {"pads": pads, "pad_value": 5}
    elif op is Op.CONCAT:
        shape, attrs = (1, h, w, 2 * c), {"axis": 3}
    else:
        oh, ow = (h + padding[0] + padding[2] - filt[0]) // stride[0] + 1, (w + padding[1] + padding[3] - filt[1]) \
            // stride[1] + 1
        if oh < 1 or ow < 1 or padding[0] >= filt[0] or padding[1] >= filt[1] or (oh - 1) * stride[0] - padding[0] \
                >= h or (ow - 1) * stride[1] - padding[1] >= w:
            return None
        shape = (1, oh, ow, c)
        attrs = {"filter": filt, "stride": stride, "padding": padding, "act_min": act[0], "act_max": act[1]}
    b.add_tensor(Tensor("win.out", shape, "int8", q))
    b.add_node("win", op, ("conv.out", "conv.out") if op is Op.CONCAT else ("conv.out",), ("win.out",), **attrs)
    n = int(np.prod(shape))
    b.add_tensor(Tensor("flat", (1, n), "int8", q))
    b.add_node("flatten", Op.RESHAPE, ("win.out",), ("flat",), shape=(1, n))
    b.add_tensor(Tensor("fc.weight", (4, n), "int8", QParams.per_channel([0.02] * 4),
                        rng.integers(-127, 128, (4, n)).astype(np.int8)))
    b.add_tensor(Tensor("fc.bias", (4,), "int32", None, np.zeros(4, np.int32)))
    b.add_tensor(Tensor("fc.out", (1, 4), "int8", QParams.per_tensor(0.05, 0)))
    b.add_node("fc", Op.FULLY_CONNECTED, ("flat", "fc.weight", "fc.bias"), ("fc.out",))
    return verify_graph(b.build(["fc.out"]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), op=st.sampled_from([Op.AVG_POOL2D, Op.MAX_POOL2D, Op.PAD, Op.CONCAT]),
       filt=st.tuples(st.integers(1, 4), st.integers(1, 4)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       padding=st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
       act=st.sampled_from([(-128, 127), (5, 127), (-20, 60)]))
def test_random_window_geometries_match_torch(seed, op, filt, stride, padding, act):
    graph = _window_graph(seed, op, filt, stride, padding, act)
    if graph is None:
        return
    scheme = make_scheme(graph, ["conv", "fc"], {"conv": 1.0, "fc": 1.0})
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, graph.tensors["input"].shape).astype(np.int8)
    ref, ref_loss = torch_grads(graph, x, 1)
    ours, loss = compiled_grads(graph, scheme, x, 1)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    _check(ours, ref, f"{op.value} compiled")
    sim, _ = sim_grads(graph, scheme, x, 1)
    _check(sim, ref, f"{op.value} simulator")
