"""The simulator's training recipe on the device, to the bit: warm-up + cosine learning-rate
schedule computed by the generated step, gradient accumulation over K samples, momentum and
stochastic rounding (the default). The per-sample loss bits and the trained weights of the
simulator (train/loop.py), the reference interpreter (interp/training.py), the host build and
the emulated Cortex-M7 (QEMU) are all equal, with no tolerance."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import default_cnn_with_scheme, require_tool

from microtrain.codegen.driver_files import read_weights, write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training, schedule_updates
from microtrain.interp.training import optimizer_state_values, run_training_graph
from microtrain.runtime.schedule import learning_rate
from microtrain.targets import cortex_m7, host
from microtrain.train.loop import TrainConfig, Trainer

pytestmark = [pytest.mark.target, pytest.mark.host_c]
K, STEPS, N, LR, SEED, WARMUP = 4, 16, 6, 0.05, 5, 0.25


def _data(graph, n, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
    return x, rng.integers(0, graph.tensors[graph.outputs[0]].shape[1], n).astype(np.int32)


def _simulator(graph, scheme, x, y, momentum):
    cfg = TrainConfig(optimizer="sgdm-qas" if momentum else "sgd-qas", lr=LR, batch_size=1, accumulate=K,
                      rounding="stochastic", seed=SEED, momentum=momentum, schedule="cosine")
    trainer = Trainer(graph, scheme, cfg)
    cache = trainer.cache(x)
    warmup, total = schedule_updates(STEPS, K, WARMUP)
    losses = []
    for t in range(STEPS // K):
        group = [np.array([s % N]) for s in range(t * K, (t + 1) * K)]
        trainer._step(cache, y.astype(np.int64), group, learning_rate("cosine", LR, t, warmup, total))
        losses += trainer.sample_losses
    return np.array(losses, np.float32), trainer.final_graph()


def _reference(step, x, y):
    warmup, total = schedule_updates(STEPS, K, WARMUP)
    trained = [t["name"] for t in step.graph.meta["training"]["trained"]]
    params = optimizer_state_values(step.graph)
    losses = []
    for s in range(STEPS):
        t = s // K
        feeds = {"input": x[s % N][None], "label": y[s % N:s % N + 1],
                 "lr": np.array([learning_rate("cosine", LR, t, warmup, total)], np.float32)}
        vals = run_training_graph(step.graph, feeds, params=params, step=t, apply=s % K == K - 1, verify=s == 0)
        params.update({p: vals[p] for p in trained})
        losses.append(vals["loss"][0])
    return np.array(losses, np.float32), {p: params[p] for p in trained}


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_schedule_accumulation_stochastic_rounding_bit_exact(tmp_path, momentum):
    require_tool("gcc", "gcc")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    graph, scheme = default_cnn_with_scheme()
    opts = CompileOptions(seed=SEED, accumulate=K, momentum=momentum, lr=LR, lr_schedule="cosine", warmup=WARMUP,
                          steps=STEPS)
    assert opts.rounding == "stochastic"  # the default of every verb
    step = compile_training(graph, scheme, opts)
    state = step.plan.state
    trained = step.graph.meta["training"]["trained"]
    assert len(state) == len(trained) * (1 + (momentum > 0))  # an fp32 buffer per kept element, each kind
    assert step.plan.peak_bytes == step.plan.arena_bytes + step.plan.trainable_bytes + sum(state.values())
    out = generate_project(step, graph, tmp_path / "proj")
    x, y = _data(graph, N)
    # the driver's config carries no schedule: the compiled defaults (cosine, 1 warm-up update of 4)
    runs = {"host": host.run(out, write_driver_files(tmp_path / "host", x, y, steps=STEPS, lr=LR, seed=SEED),
                             exe=host.build(out)),
            "qemu": cortex_m7.run(out, write_driver_files(tmp_path / "qemu", x, y, steps=STEPS, lr=LR, seed=SEED))}
    sim_losses, sim_graph = _simulator(graph, scheme, x, y, momentum)
    ref_losses, ref_params = _reference(step, x, y)
    bits = {name: [f"{b:08x}" for b in r.loss_bits] for name, r in runs.items()}
    bits["simulator"] = [f"{b:08x}" for b in sim_losses.view(np.uint32)]
    bits["reference"] = [f"{b:08x}" for b in ref_losses.view(np.uint32)]
    assert len(bits["qemu"]) == STEPS
    for name in ("host", "simulator", "reference"):
        assert bits[name] == bits["qemu"], f"loss bits: {name} differs from QEMU"
    weights = {name: read_weights(out, r.weights_path) for name, r in runs.items()}
    moved = 0
    for t in trained:
        n = t["name"]
        for name, arr in (("host", weights["host"][n]), ("simulator", sim_graph.tensors[n].data),
                          ("reference", ref_params[n])):
            assert np.array_equal(np.asarray(arr), weights["qemu"][n]), f"{n}: {name} differs from QEMU"
        moved += int(np.sum(weights["qemu"][n] != graph.tensors[n].data))
    assert moved > 0, "training changed no weight: the comparison would prove nothing"
