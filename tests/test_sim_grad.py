"""Simulator gradients against torch.autograd on the dequantized float equivalent.

The float equivalent of each op is written with plain torch ops (conv2d, matmul, add,
mean) on the dequantized tensors; its value is replaced by the int8 result through a
straight-through identity (``v_int + (f - f.detach())``) and its clamp by the mask of the
stored int8 output, which is exactly the estimator the simulator documents. Tolerance:
rtol 1e-4, atol 1e-6 (float32, different summation orders).
"""

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from microtrain.ir.ops import Op
from microtrain.scheme import make_scheme
from microtrain.sim.ops import clamp_mask, conv_float, real_weights
from microtrain.sim.random_graph import random_graph, random_inputs
from microtrain.sim.simulator import Simulator

RTOL, ATOL = 1e-4, 1e-6


def _float_equivalent_grads(sim: Simulator, x: np.ndarray, labels: torch.Tensor, trained: list[tuple[str, str]]):
    """Gradients of the loss w.r.t. the real trained tensors, by autograd on the float ops."""
    g = sim.graph
    _, env = sim.forward(x)  # int8 values of every activation (the STE forward values)
    leaves = {}
    real: dict[str, torch.Tensor] = {}
    for name in sim.live_at_cut():
        real[name] = env[name].real.detach()
    for node in g.nodes[sim.cut:]:
        out = env[node.outputs[0]]
        value = out.real.detach()
        if node.op in (Op.CONV2D, Op.FULLY_CONNECTED):
            p = sim.params[node.name]
            w, b = real_weights(g, node, p.w_q, p.b_q)
            if (node.name, "weight") in trained:
                w = leaves[(node.name, "weight")] = w.clone().requires_grad_()
            if (node.name, "bias") in trained:
                b = leaves[(node.name, "bias")] = b.clone().requires_grad_()
            f = conv_float(node, real[node.inputs[0]], w, b) * clamp_mask(out.q, node)
        elif node.op is Op.ADD:
            f = (real[node.inputs[0]] + real[node.inputs[1]]) * clamp_mask(out.q, node)
        elif node.op is Op.GLOBAL_AVG_POOL:
            f = real[node.inputs[0]].mean(dim=(1, 2), keepdim=True)  # linear: the compiler does not mask it
        elif node.op is Op.RESHAPE:
            real[node.outputs[0]] = real[node.inputs[0]].reshape(value.shape)
            continue
        real[node.outputs[0]] = value + (f - f.detach())
    logits = real[g.outputs[0]]
    loss = F.cross_entropy(logits.reshape(logits.shape[0], -1), labels)
    grads = torch.autograd.grad(loss, [leaves[k] for k in trained])
    return dict(zip(trained, grads, strict=True))


def _sim_grads(sim: Simulator, x, labels, trained):
    sim.attach_grads(trained)
    logits, _ = sim.forward(x)
    F.cross_entropy(logits, labels).backward()
    out = {}
    for layer, kind in trained:
        p = sim.params[layer]
        out[(layer, kind)] = (p.w_real if kind == "weight" else p.b_real).grad
    return out


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), blocks=st.integers(1, 3), width=st.sampled_from([4, 8]),
       batch=st.integers(1, 4), first=st.integers(0, 6))
def test_gradients_match_float_equivalent(seed, blocks, width, batch, first):
    g = random_graph(seed, resolution=9, width=width, blocks=blocks)
    layers = [n.name for n in g.weighted_nodes()]
    chosen = layers[min(first, len(layers) - 1):]
    trained = [(n, k) for n in chosen for k in ("weight", "bias")]
    scheme = make_scheme(g, bias_layers=chosen, weight_ratios={n: 1.0 for n in chosen})
    sim = Simulator(g, scheme)
    x = random_inputs(g, batch, seed)
    labels = torch.from_numpy(np.random.default_rng(seed).integers(0, 5, batch))
    ours = _sim_grads(sim, x, labels, trained)
    sim.attach_grads([])
    ref = _float_equivalent_grads(sim, x, labels, trained)
    nonzero = 0
    for key in trained:
        assert ours[key].shape == ref[key].shape, key
        torch.testing.assert_close(ours[key], ref[key], rtol=RTOL, atol=ATOL, msg=lambda m, key=key: f"{key}: {m}")
        nonzero += int(torch.count_nonzero(ref[key]))
    assert nonzero > 0  # the test exercised real gradients


def test_backprop_stops_at_earliest_updated_layer():
    g = random_graph(5, blocks=3)
    scheme = make_scheme(g, bias_layers=["blocks.2.pointwise2", "classifier"])
    sim = Simulator(g, scheme)
    sim.attach_grads([("blocks.2.pointwise2", "bias"), ("classifier", "bias")])
    logits, env = sim.forward(random_inputs(g, 2))
    # nothing before the cut carries a float tensor or an autograd history
    for node in g.nodes[:sim.cut]:
        for name in node.outputs:
            assert env[name]._real is None or not env[name]._real.requires_grad, name
    assert logits.requires_grad
    F.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert sim.params["blocks.2.pointwise2"].b_real.grad is not None


def test_fp32_head_gradient_is_linear_layer_gradient():
    g = random_graph(7)
    scheme = make_scheme(g, bias_layers=["classifier"], head="fp32")
    sim = Simulator(g, scheme)
    x = random_inputs(g, 3)
    sim.head_w.requires_grad_()
    sim.head_b.requires_grad_()
    logits, env = sim.forward(x)
    F.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    feats = env["flatten.out"].real.detach()
    w = sim.head_w.detach().clone().requires_grad_()
    F.cross_entropy(feats @ w.t() + sim.head_b.detach(), torch.tensor([0, 1, 2])).backward()
    torch.testing.assert_close(sim.head_w.grad, w.grad, rtol=RTOL, atol=ATOL)


def test_fp32_head_exports_to_int8_classifier():
    from microtrain.interp.reference import run_graph

    g = random_graph(8)
    sim = Simulator(g, make_scheme(g, bias_layers=["classifier"], head="fp32"))
    with torch.no_grad():
        sim.head_w.mul_(1.5)
    x = random_inputs(g, 6, 1)
    logits, _ = sim.forward(x)
    exported = sim.to_graph(logit_range=float(logits.abs().max()) * 1.1)
    out = np.stack([run_graph(exported, {"input": x[i:i + 1]})["classifier.out"][0] for i in range(6)])
    y = exported.tensors["classifier.out"].quant
    # the int8 head reproduces the float head up to weight/bias/logit quantization
    assert np.abs(out * y.s - logits.detach().numpy()).max() < 0.1 * float(logits.abs().max())
