"""The torch simulator trains exactly as the device does: at batch 1, its gradients are the
reference training interpreter's (whose float32 order the generated C follows, bit for bit) and so
are its losses and trained tensors after many steps of warm-up + cosine with stochastic rounding;
at batch N its gradient is the in-order sum of the N per-sample gradients.

Graphs: random MobileNet-style chains (conv, depthwise, pointwise, residual ADD, clamps narrower
than int8, global average pool, FC) and a user network with max/average pooling, zero padding and
a concatenation (``tests/user_models/branch_pool.py``, random weights, calibrated on digits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from byom_support import BRANCH

import microtrain.compiler  # noqa: F401
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.interp.training import optimizer_state_values, run_training_graph
from microtrain.ir.ops import Op
from microtrain.runtime.schedule import learning_rate
from microtrain.sim.random_graph import random_graph, random_inputs
from microtrain.sparse.presets import load_scheme
from microtrain.train.loop import TrainConfig, Trainer

STEPS, LR = 40, 0.05


@pytest.fixture(scope="module")
def branch_graph(tmp_path_factory):
    from microtrain.api.quantize import quantize_checkpoint
    from microtrain.frontend.user_model import load_arch

    path = tmp_path_factory.mktemp("branch") / "branch.pt"
    torch.manual_seed(0)
    torch.save(load_arch(BRANCH, {}).state_dict(), path)
    return quantize_checkpoint(path, BRANCH, "digits", calib_samples=64, input_shape=[1, 1, 12, 12])


def _graphs(branch_graph):
    return {"random-0": random_graph(0, resolution=9, width=8, blocks=2),
            "random-1": random_graph(1, resolution=10, width=4, blocks=3), "branch": branch_graph}


def _inputs(graph, n):
    rng = np.random.default_rng(3)
    return random_inputs(graph, n, 3), rng.integers(0, graph.tensors[graph.outputs[0]].shape[-1], n)


def _sim_grads(trainer: Trainer, cache, y, idx) -> dict[str, np.ndarray]:
    from microtrain.train.device_loss import device_cross_entropy

    opt = trainer.int8_opt
    opt.attach()
    logits = trainer.logits(trainer._take(cache, idx))
    device_cross_entropy(logits, torch.from_numpy(y[idx]).to(torch.int64)).sum().backward()
    out = {}
    for slot in opt.slots:
        node = trainer.sim.graph.node(slot.layer)
        out[node.inputs[1] if slot.kind == "weight" else node.inputs[2]] = opt._grad(slot)
    return out


@pytest.mark.parametrize("name", ["random-0", "random-1", "branch"])
def test_batch1_gradients_and_training_equal_the_reference(branch_graph, name):
    graph = _graphs(branch_graph)[name]
    scheme = load_scheme("full", graph)
    if name == "branch":
        assert {Op.MAX_POOL2D, Op.AVG_POOL2D, Op.PAD, Op.CONCAT} <= {n.op for n in graph.nodes}
    x, y = _inputs(graph, STEPS)
    step = compile_training(graph, scheme, CompileOptions(rounding="stochastic", seed=0))
    tg = step.graph
    trained = [t["name"] for t in tg.meta["training"]["trained"]]
    grad_of = {n.inputs[0]: n.inputs[1] for n in tg.nodes if n.op in (Op.UPDATE_WEIGHT, Op.UPDATE_BIAS)}
    params = optimizer_state_values(tg)
    trainer = Trainer(graph, scheme, TrainConfig(optimizer="sgd-qas", lr=LR, batch_size=1, seed=0))
    cache = trainer.cache(x)
    for i in range(STEPS):
        rate = learning_rate("cosine", LR, i, STEPS // 10, STEPS)
        feeds = {"input": x[i][None], "label": np.array([y[i]], np.int32), "lr": np.array([rate], np.float32)}
        vals = run_training_graph(tg, feeds, params=params, step=i, verify=(i == 0))
        if i < 3:  # every gradient, bit for bit (sign of zero included)
            sim = _sim_grads(trainer, cache, y, np.array([i]))
            for tensor, g in sim.items():
                ref = vals[grad_of[tensor]].reshape(g.shape)
                bad = np.flatnonzero(g.view(np.uint32) != ref.view(np.uint32))
                assert bad.size == 0, f"step {i}: d {tensor} differs at {bad.size} of {g.size}, first {bad[0]}"
        trainer._step(cache, y.astype(np.int64), [np.array([i])], rate)
        assert np.float32(trainer.sample_losses[0]).view(np.uint32) == vals["loss"][0].view(np.uint32), f"loss {i}"
        params.update({p: vals[p] for p in trained})
    final = trainer.final_graph()
    assert any(not np.array_equal(params[p], graph.tensors[p].data) for p in trained)
    for p in trained:
        np.testing.assert_array_equal(final.tensors[p].data, params[p], err_msg=p)


def test_batch_gradient_is_the_in_order_sum_of_sample_gradients(branch_graph):
    from microtrain.sim import device_grads as dg

    for graph in _graphs(branch_graph).values():
        scheme = load_scheme("full", graph)
        x, y = _inputs(graph, 3)
        trainer = Trainer(graph, scheme, TrainConfig(optimizer="sgd-qas", lr=LR, batch_size=3, seed=0))
        cache = trainer.cache(x)
        batch = _sim_grads(trainer, cache, y, np.arange(3))
        each = [_sim_grads(trainer, cache, y, np.array([i])) for i in range(3)]
        for tensor, g in batch.items():
            want = dg.sample_sum(torch.from_numpy(np.stack([e[tensor] for e in each]))).numpy()
            np.testing.assert_array_equal(g, want, err_msg=tensor)
