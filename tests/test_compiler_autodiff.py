"""Every VJP rule against torch.autograd on the dequantized float equivalent (random shapes).

The torch model replays the int8 forward values and differentiates with the straight-through
estimator the compiler implements: each op's real pre-activation carries the gradient,
masked by the clamp derivative act_min < y_q < act_max read from the int8 output.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import microtrain.compiler  # noqa: F401
from microtrain import quant
from microtrain.compiler.build_training_graph import build_training_graph
from microtrain.compiler.differentiate import VJP_EXEMPT, VJP_RULES, differentiate
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.interp.reference import run_graph
from microtrain.interp.training import ALL_EVAL_RULES, run_training_graph
from microtrain.ir.ops import Op
from microtrain.ir.shapes_training import TRAINING_SHAPE_RULES
from microtrain.ir.verify import SHAPE_RULES
from microtrain.scheme import make_scheme


def torch_grads(graph, x, label):
    """Gradients of the loss w.r.t. every real weight and bias, by torch (float64, STE)."""
    vals = run_graph(graph, {graph.inputs[0]: x}, keep_all=True)
    t = {}
    params = {}

    def deq(name):
        q = graph.tensors[name].quant
        return torch.tensor(quant.dequantize(vals[name], q.s, q.z))

    def ste(node, pre):
        y = node.outputs[0]
        yq = vals[y].astype(np.int32)
        mask = torch.tensor((yq > node.attrs.get("act_min", -128)) & (yq < node.attrs.get("act_max", 127)))
        return deq(y) + (pre - pre.detach()) * mask

    t[graph.inputs[0]] = deq(graph.inputs[0])
    for node in graph.nodes:
        if node.op in (Op.CONV2D, Op.FULLY_CONNECTED):
            xn, wn, bn = node.inputs
            xt, wt = graph.tensors[xn], graph.tensors[wn]
            ws = wt.quant.scales()
            w = torch.tensor(wt.data * ws.reshape((-1,) + (1,) * (wt.data.ndim - 1)), requires_grad=True)
            b = torch.tensor(graph.tensors[bn].data * xt.quant.s * ws, requires_grad=True)
            params[wn], params[bn] = w, b
            if node.op == Op.CONV2D:
                top, left, bottom, right = node.attrs["padding"]
                xin = torch.nn.functional.pad(t[xn].permute(0, 3, 1, 2), (left, right, top, bottom))
                pre = torch.nn.functional.conv2d(xin, w.permute(0, 3, 1, 2), b, stride=tuple(node.attrs["stride"]),
                                                 groups=node.attrs["groups"]).permute(0, 2, 3, 1)
            else:
                pre = t[xn] @ w.T + b
            t[node.outputs[0]] = ste(node, pre)
        elif node.op == Op.ADD:
            t[node.outputs[0]] = ste(node, t[node.inputs[0]] + t[node.inputs[1]])
        elif node.op == Op.GLOBAL_AVG_POOL:
            pre = t[node.inputs[0]].mean(dim=(1, 2), keepdim=True)
            t[node.outputs[0]] = deq(node.outputs[0]) + (pre - pre.detach())
        elif node.op == Op.RESHAPE:
            t[node.outputs[0]] = t[node.inputs[0]].reshape(node.attrs["shape"])
    logits = t[graph.outputs[0]]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([int(label)]))
    loss.backward()
    return {k: v.grad.numpy() for k, v in params.items()}, float(loss.detach())


def compiled_grads(graph, scheme, x, label):
    g = differentiate(build_training_graph(graph, scheme))
    vals = run_training_graph(g, {"input": x, "label": np.array([label], np.int32),
                                  "lr": np.array([0.0], np.float32)})
    return {p: vals[d] for p, d in g.meta["training"]["grads"].items()}, float(vals["loss"][0])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), size=st.sampled_from([5, 6, 8]), stride=st.sampled_from([1, 2]),
       expand=st.sampled_from([1, 2, 3]))
def test_every_gradient_matches_torch(seed, size, stride, expand):
    graph = toy_mbnet(seed, size=size, blocks=((expand, 8, 1), (2, 8, stride)), classes=5)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, bias_layers=names, weight_ratios={n: 1.0 for n in names})
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, graph.tensors["input"].shape).astype(np.int8)
    label = int(rng.integers(0, 5))
    ours, loss = compiled_grads(graph, scheme, x, label)
    ref, ref_loss = torch_grads(graph, x, label)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert set(ours) == set(ref)
    for name in ref:
        scale = max(np.abs(ref[name]).max(), 1e-12)
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-3, atol=1e-5 * scale, err_msg=name)


def test_sliced_and_partial_gradients_are_rows_of_the_full_ones():
    graph = toy_mbnet(3, size=6, classes=4)
    x = np.random.default_rng(0).integers(-128, 128, (1, 6, 6, 3)).astype(np.int8)
    names = [n.name for n in graph.weighted_nodes()]
    full, _ = compiled_grads(graph, make_scheme(graph, names, {n: 1.0 for n in names}), x, 1)
    from microtrain.compiler.pipeline import CompileOptions, compile_training

    scheme = make_scheme(graph, names[-3:], {"blocks.1.depthwise": 0.5, "blocks.1.pointwise1": 0.25})
    step = compile_training(graph, scheme, CompileOptions(reorder=False))
    vals = run_training_graph(step.graph, {"input": x, "label": np.array([1], np.int32),
                                           "lr": np.array([0.0], np.float32)})
    for w in scheme.weight_layers:
        wname = f"{w.layer}.weight"
        got = vals[step.graph.meta["training"]["grads"][wname]]
        np.testing.assert_array_equal(got, full[wname][list(w.channels)])
    # nothing earlier than the earliest updated layer is differentiated
    earliest = names.index("blocks.1.pointwise1")
    frozen = {f"{n}.weight" for n in names[:earliest]} | {f"{n}.bias" for n in names[:earliest]}
    for node in step.graph.nodes:
        if node.name.startswith("bwd:") or node.name.startswith("update:"):
            assert not frozen & set(node.inputs[1:2]) or node.op in (Op.CONV2D_GRAD_INPUT, Op.FC_GRAD_INPUT)
            assert "first_conv.out" not in node.inputs


def test_rule_tables_cover_every_op():
    training = set(TRAINING_SHAPE_RULES)
    for op in Op:
        assert op in SHAPE_RULES, f"no shape rule for {op}"
        assert op in ALL_EVAL_RULES, f"no evaluation rule for {op}"
        assert (op in VJP_RULES) != (op in VJP_EXEMPT), f"{op} must have a VJP rule or be exempt, not both"
    assert training <= set(VJP_EXEMPT)
