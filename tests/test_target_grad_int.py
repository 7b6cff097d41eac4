"""Integer errors (``--grad-dtype``) on the emulated Cortex-M7: the per-sample loss bits and the
trained weights of the simulator, the reference interpreter, the host build and QEMU are equal,
with no tolerance, on the default CNN and its scheme (stochastic rounding, constant lr)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import default_cnn_with_scheme, require_tool

from microtrain.codegen.driver_files import read_weights, write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.interp.training import run_training_graph
from microtrain.targets import cortex_m7, host
from microtrain.train.loop import TrainConfig, Trainer

pytestmark = [pytest.mark.target, pytest.mark.host_c]
STEPS, N, LR, SEED = 10, 5, 0.05, 3


@pytest.mark.parametrize("grad_dtype", ["int8", "int16"])
def test_integer_errors_bit_exact_everywhere(tmp_path, grad_dtype):
    require_tool("gcc", "gcc")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    graph, scheme = default_cnn_with_scheme()
    step = compile_training(graph, scheme, CompileOptions(seed=SEED, lr=LR, lr_schedule="constant",
                                                          grad_dtype=grad_dtype))
    out = generate_project(step, graph, tmp_path / "proj")
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (N,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
    y = rng.integers(0, graph.tensors[graph.outputs[0]].shape[1], N).astype(np.int32)
    runs = {"host": host.run(out, write_driver_files(tmp_path / "host", x, y, steps=STEPS, lr=LR, seed=SEED),
                             exe=host.build(out)),
            "qemu": cortex_m7.run(out, write_driver_files(tmp_path / "qemu", x, y, steps=STEPS, lr=LR, seed=SEED))}
    # the simulator at batch 1, and the reference interpreter on the compiled graph
    trainer = Trainer(graph, scheme, TrainConfig("sgd-qas", lr=LR, batch_size=1, rounding="stochastic", seed=SEED,
                                                 schedule="constant", grad_dtype=grad_dtype))
    cache = trainer.cache(x)
    sim_losses = []
    for s in range(STEPS):
        trainer._step(cache, y.astype(np.int64), [np.array([s % N])], LR)
        sim_losses += trainer.sample_losses
    trained = [t["name"] for t in step.graph.meta["training"]["trained"]]
    params, ref_losses = {}, []
    for s in range(STEPS):
        vals = run_training_graph(step.graph, {"input": x[s % N][None], "label": y[s % N:s % N + 1],
                                               "lr": np.array([LR], np.float32)}, params=params, step=s,
                                  verify=s == 0)
        params = {p: vals[p] for p in trained}
        ref_losses.append(vals["loss"][0])
    bits = {name: [f"{b:08x}" for b in r.loss_bits] for name, r in runs.items()}
    bits["simulator"] = [f"{b:08x}" for b in np.array(sim_losses, np.float32).view(np.uint32)]
    bits["reference"] = [f"{b:08x}" for b in np.array(ref_losses, np.float32).view(np.uint32)]
    assert len(bits["qemu"]) == STEPS
    for name in ("host", "simulator", "reference"):
        assert bits[name] == bits["qemu"], f"loss bits: {name} differs from QEMU"
    weights = {name: read_weights(out, r.weights_path) for name, r in runs.items()}
    sim_graph = trainer.final_graph()
    moved = 0
    for n in trained:
        for name, arr in (("host", weights["host"][n]), ("simulator", sim_graph.tensors[n].data),
                          ("reference", params[n])):
            assert np.array_equal(np.asarray(arr), weights["qemu"][n]), f"{n}: {name} differs from QEMU"
        moved += int(np.sum(weights["qemu"][n] != graph.tensors[n].data))
    assert moved > 0, "training changed no weight: the comparison would prove nothing"
