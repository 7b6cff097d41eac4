"""Integer error tensors (``--grad-dtype int8|int16``, ``runtime/grad_quant.py``): the rule, and
the simulator and the reference interpreter agreeing bit for bit on the gradients it gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microtrain.compiler.build_training_graph import build_training_graph
from microtrain.compiler.differentiate import differentiate
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.interp.training import run_training_graph
from microtrain.ir.ops import Op
from microtrain.runtime.grad_quant import dequantize_error, fake_quantize_error, quantize_error
from microtrain.scheme import make_scheme, trained_tensor_order
from microtrain.sim.simulator import Simulator
from microtrain.train.device_loss import device_cross_entropy


@pytest.mark.parametrize("bits", [8, 16])
def test_rule_range_exponent_and_exactness(bits):
    rng = np.random.default_rng(bits)
    d = (rng.standard_normal((3, 5, 7)) * 10.0 ** rng.integers(-8, 3)).astype(np.float32)
    q, e = quantize_error(d, bits)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == np.int32 and np.abs(q).max() <= qmax
    assert np.abs(q).max() >= 2 ** (bits - 2)  # the largest error uses the top bit: the full range
    m, k = np.frexp(np.float64(np.abs(d).max()))
    assert int(e) == k - (bits - 1)
    back = dequantize_error(q, e)
    assert np.array_equal(back.astype(np.float64), np.ldexp(q.astype(np.float64), int(e)))  # exact
    assert np.abs(back - d).max() <= 2.0 ** int(e) / 2 * (1 + 1e-6)  # half a code, the max clips < 1 code
    assert np.array_equal(fake_quantize_error(d, 0), d)


def test_rule_rounds_half_to_even_and_zero_tensors():
    d = np.array([64.0, 0.5, 1.5, 2.5, -0.5, -1.5], np.float32)  # m = 64: k = 7, e = 0 for int8
    q, e = quantize_error(d, 8)
    assert int(e) == 0 and q.tolist() == [64, 0, 2, 2, 0, -2]
    for z in (np.zeros(4, np.float32), np.full(4, 1e-35, np.float32), np.array([np.nan, 1.0], np.float32)):
        q, e = quantize_error(z, 16)
        assert not q.any() and int(e) == 0


def test_batched_is_per_sample():
    rng = np.random.default_rng(1)
    d = (rng.standard_normal((4, 3, 3, 2)) * np.array([1e-3, 1.0, 50.0, 1e-6])[:, None, None, None]).astype(np.float32)
    batched = fake_quantize_error(d, 8, batched=True)
    for i in range(4):
        assert np.array_equal(batched[i], fake_quantize_error(d[i], 8))


def _sim_grads(graph, scheme, x, label, grad_dtype):
    sim = Simulator(graph, scheme, grad_dtype)
    trained = trained_tensor_order(scheme, graph)
    sim.attach_grads(trained)
    logits, _ = sim.forward(x)
    device_cross_entropy(logits, torch.tensor([label])).sum().backward()
    out = {}
    for layer, kind in trained:
        node = graph.node(layer)
        p = sim.params[layer]
        out[node.inputs[1] if kind == "weight" else node.inputs[2]] = \
            (p.w_real if kind == "weight" else p.b_real).grad.numpy()
    return out


def _reference_grads(graph, scheme, x, label, grad_dtype):
    g = differentiate(build_training_graph(graph, scheme), grad_dtype)
    vals = run_training_graph(g, {"input": x, "label": np.array([label], np.int32), "lr": np.array([0.0], np.float32)})
    return {p: vals[d] for p, d in g.meta["training"]["grads"].items()}, g


@pytest.mark.parametrize("grad_dtype", ["int8", "int16"])
def test_simulator_and_reference_agree_bit_for_bit(grad_dtype):
    graph = toy_mbnet(5, size=8, blocks=((2, 8, 1), (3, 8, 2)), classes=5)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, bias_layers=names[-4:], weight_ratios={n: 1.0 for n in names[-4:]})
    rng = np.random.default_rng(7)
    for _ in range(3):
        x = rng.integers(-128, 128, graph.tensors["input"].shape).astype(np.int8)
        label = int(rng.integers(0, 5))
        ref, g = _reference_grads(graph, scheme, x, label, grad_dtype)
        sim = _sim_grads(graph, scheme, x, label, grad_dtype)
        assert set(ref) == set(sim)
        for name in ref:
            np.testing.assert_array_equal(sim[name], ref[name], err_msg=f"{grad_dtype} {name}")
        fp32, _ = _reference_grads(graph, scheme, x, label, "fp32")
        for name in ref:  # quantized errors: close to the fp32 gradients, and not equal to them
            a, b = ref[name].ravel().astype(np.float64), fp32[name].ravel().astype(np.float64)
            if np.abs(b).max() > 0:
                assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > (0.99 if grad_dtype == "int8" else 0.9999)
        assert any(not np.array_equal(ref[n], fp32[n]) for n in ref)
    errors = [n for n in g.nodes if n.op is Op.MASK_GRAD and n.attrs.get("error_bits")]
    assert len(errors) == 4 and g.meta["training"]["grad_dtype"] == grad_dtype
    assert all(n.attrs.get("error_bits") == int(grad_dtype[3:]) for n in g.nodes
               if n.op in (Op.CONV2D_GRAD_WEIGHT, Op.FC_GRAD_WEIGHT, Op.BIAS_GRAD))


def test_compiled_step_keeps_integer_errors_whole():
    """Through the whole pipeline: the per-tensor scale needs the whole error, so no block backward
    is streamed channel by channel; the step runs in the reference and matches the unscheduled graph."""
    graph = toy_mbnet(2, size=8, blocks=((2, 8, 1), (3, 8, 1)), classes=4)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[-5:], {names[-5]: 0.5, names[-1]: 1.0})
    x = np.random.default_rng(3).integers(-128, 128, graph.tensors["input"].shape).astype(np.int8)
    feeds = {"input": x, "label": np.array([2], np.int32), "lr": np.array([0.0], np.float32)}
    fp32 = compile_training(graph, scheme, CompileOptions())
    assert any(n.op is Op.INVERTED_BOTTLENECK_GRAD for n in fp32.graph.nodes)
    step = compile_training(graph, scheme, CompileOptions(grad_dtype="int8"))
    assert not any(n.op is Op.INVERTED_BOTTLENECK_GRAD for n in step.graph.nodes)
    assert step.graph.meta["training"]["grad_dtype"] == "int8"
    vals = run_training_graph(step.graph, feeds)
    full, _ = _reference_grads(graph, scheme, x, 2, "int8")
    grads = step.graph.meta["training"]["grads"]
    for w in scheme.weight_layers:  # the kept rows of the unscheduled graph's gradients, bit for bit
        np.testing.assert_array_equal(vals[grads[f"{w.layer}.weight"]], full[f"{w.layer}.weight"][list(w.channels)])
    for layer in scheme.bias_layers:
        np.testing.assert_array_equal(vals[grads[f"{layer}.bias"]], full[f"{layer}.bias"])

