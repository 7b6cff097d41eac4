"""Optimizers and the loop on small random graphs: updates touch only the kept elements,
follow the rounding rule exactly, QAS moves real weights like fp32 SGD, training learns."""

import numpy as np
import torch
import torch.nn.functional as F

from microtrain.runtime.rounding import apply_update, update_factors
from microtrain.runtime.schedule import learning_rate
from microtrain.scheme import make_scheme
from microtrain.sim.random_graph import random_graph, random_inputs
from microtrain.sim.simulator import Simulator
from microtrain.train.loop import TrainConfig, Trainer
from microtrain.train.optim import Int8Optimizer


def _setup(seed=0):
    g = random_graph(seed, blocks=2)
    scheme = make_scheme(g, bias_layers=["blocks.1.pointwise2", "classifier"],
                         weight_ratios={"blocks.1.pointwise1": 0.5, "classifier": 1.0})
    return g, scheme


def _one_step(sim, opt, x, y, lr):
    opt.attach()
    logits, _ = sim.forward(x)
    F.cross_entropy(logits, y).backward()
    grads = {(l, k): (sim.params[l].w_real if k == "weight" else sim.params[l].b_real).grad.numpy().copy()
             for l, k in opt.order}
    before = {name: (p.w_q.clone(), p.b_q.clone()) for name, p in sim.params.items()}
    opt.step(lr)
    return grads, before


def test_sgd_step_follows_rule_and_touches_only_kept_channels():
    g, scheme = _setup()
    sim = Simulator(g, scheme)
    opt = Int8Optimizer(sim, "sgd", qas=True, rounding="stochastic", seed=3)
    x, y = random_inputs(g, 4), torch.tensor([0, 1, 2, 3])
    grads, before = _one_step(sim, opt, x, y, lr=0.5)
    layer = "blocks.1.pointwise1"
    kept = list(scheme.weight_update(layer).channels)
    frozen = [c for c in range(before[layer][0].shape[0]) if c not in kept]
    w_after = sim.params[layer].w_q
    assert torch.equal(w_after[frozen], before[layer][0][frozen])  # untouched channels
    assert torch.equal(sim.params[layer].b_q, before[layer][1])  # bias not in scheme
    node = g.node(layer)
    f = update_factors(g.tensors[node.inputs[1]].quant.scales(), g.tensors[node.inputs[0]].quant.s, "weight", True)
    tid = opt.order.index((layer, "weight"))
    index = np.arange(w_after.numel()).reshape(w_after.shape)[kept]
    expected = apply_update(before[layer][0].numpy()[kept], grads[(layer, "weight")][kept], 0.5,
                            f[kept].reshape(-1, 1, 1, 1), "weight", "stochastic", 3, 0, tid, index)
    assert np.array_equal(w_after.numpy()[kept], expected)
    assert not torch.equal(w_after, before[layer][0])  # something did move
    # untrained layers never change
    assert torch.equal(sim.params["first_conv"].w_q, before["first_conv"][0])


def test_qas_moves_real_weights_like_fp32_sgd():
    # With QAS the real change of a weight is -lr*g up to the rounding of one int8 step.
    g, scheme = _setup(1)
    sim = Simulator(g, scheme)
    opt = Int8Optimizer(sim, "sgd", qas=True, rounding="nearest")
    grads, before = _one_step(sim, opt, random_inputs(g, 8, 2), torch.arange(8) % 5, lr=2.0)
    s_w = torch.from_numpy(g.tensors["classifier.weight"].quant.scales()).view(-1, 1)
    real_change = (sim.params["classifier"].w_q - before["classifier"][0]).double() * s_w
    target = -2.0 * torch.from_numpy(grads[("classifier", "weight")]).double()
    new = sim.params["classifier"].w_q
    free = new.abs() < 127  # saturated elements (the channel's max sits at +-127) cannot follow
    assert int(free.sum()) > 20
    assert torch.all(((real_change - target).abs() <= 0.5 * s_w + 1e-9)[free])


def test_float_shadow_accumulates_small_updates_nearest_drops_them():
    g, scheme = _setup(2)
    x, y = random_inputs(g, 8, 3), torch.arange(8) % 5
    moved = {}
    for shadow in (False, True):
        sim = Simulator(g, scheme)
        opt = Int8Optimizer(sim, "sgd", qas=True, rounding="nearest", shadow=shadow)
        w0 = sim.params["classifier"].w_q.clone()
        for _ in range(30):
            _one_step(sim, opt, x, y, lr=0.01)
        moved[shadow] = int((sim.params["classifier"].w_q != w0).sum())
    assert moved[True] > moved[False]


def test_cosine_schedule_with_warmup():
    """The simulator's schedule is the device's float32 one (runtime/schedule.py)."""
    f32 = lambda v: float(np.float32(v))  # noqa: E731
    assert learning_rate("cosine", 1.0, 0, 10, 100) == f32(0.1)
    assert learning_rate("cosine", 1.0, 9, 10, 100) == 1.0
    assert learning_rate("cosine", 1.0, 10, 10, 100) == 1.0
    assert abs(learning_rate("cosine", 1.0, 55, 10, 100) - 0.5) < 1e-7
    assert learning_rate("cosine", 1.0, 100, 10, 100) == 0.0
    assert learning_rate("constant", 0.3, 55, 10, 100) == f32(0.3)


def test_accumulation_equals_bigger_batch_for_sgd():
    g, scheme = _setup(4)
    x = random_inputs(g, 16, 5)
    y = (np.arange(16) % 5).astype(np.int64)
    graphs = []
    for bs, acc in ((8, 1), (4, 2)):
        tr = Trainer(g, scheme, TrainConfig("sgd-qas", lr=0.5, epochs=1, batch_size=bs, accumulate=acc,
                                            rounding="nearest"))
        tr.fit(tr.cache(x), y)
        graphs.append(tr.final_graph())
    for name, t in graphs[0].tensors.items():
        if t.is_const:
            # fp32 sums differ in order: allow a rare one-step difference on a tie
            assert np.abs(t.data.astype(np.int64) - graphs[1].tensors[name].data.astype(np.int64)).max() <= 1


def test_training_learns_a_separable_task():
    g = random_graph(6, blocks=1, classes=2)
    scheme = make_scheme(g, bias_layers=["blocks.0.pointwise2", "classifier"],
                         weight_ratios={"classifier": 1.0, "blocks.0.pointwise2": 1.0})
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 128)
    x = np.where(y[:, None, None, None] == 1, 100, -100) + rng.integers(-20, 20, (128, 8, 8, 3))
    x = x.astype(np.int8)
    results = {}
    for name, lr in (("sgd-qas", 1.0), ("fp32-sgdm", 0.3)):
        tr = Trainer(g, scheme, TrainConfig(name, lr=lr, epochs=3, batch_size=8))
        cache = tr.cache(x)
        before = tr.evaluate(cache, y)
        tr.fit(cache, y, cache, y)
        results[name] = (before, tr.history[-1]["test_accuracy"])
    for name, (before, after) in results.items():
        assert before < 0.6 and after >= 0.9, (name, before, after)
