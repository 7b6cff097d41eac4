"""The reconstruction loss of an autoencoder (``compile --loss mse``): the mean squared error
between the dequantized output and the model's own int8 input. The C kernel equals its numpy twin
bit for bit and its gradient is torch.autograd's; a small autoencoder trained with the device's
recipe (cosine schedule, accumulation, stochastic rounding) gives the same loss bits and trained
weights in the simulator, the reference interpreter, the host build and the emulated Cortex-M7,
and the anomaly scores (reconstruction errors) the device prints are the reference's."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
from conftest import require_tool
from runtime_harness.rt import ptr

from microtrain.codegen.driver_files import parse_scores, read_weights, write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.build_training_graph import CompileError
from microtrain.compiler.pipeline import CompileOptions, compile_training, schedule_updates
from microtrain.interp.reference import run_graph
from microtrain.interp.training import optimizer_state_values, run_training_graph
from microtrain.runtime.losses import mean_squared_error
from microtrain.runtime.schedule import learning_rate
from microtrain.scheme import make_scheme
from microtrain.train.loop import TrainConfig, Trainer
from microtrain.zoo.ad_autoencoder import build_autoencoder, quantize_autoencoder, quantize_inputs

K, STEPS, N, LR, SEED, WARMUP, FEATURES = 2, 12, 6, 0.02, 7, 0.25, 32


@pytest.mark.host_c
def test_kernel_equals_twin_and_autograd(tmp_path_factory):
    from runtime_harness.rt import runtime

    lib = runtime(tmp_path_factory)
    rng = np.random.default_rng(1)
    for n, scale, zero in ((1, 0.5, 0), (7, 0.03125, -5), (640, 0.0731, 17), (33, 1e-3, -128)):
        pred = rng.normal(0, 2, n).astype(np.float32)
        target = rng.integers(-128, 128, n).astype(np.int8)
        loss, grad = np.zeros(1, np.float32), np.zeros(n, np.float32)
        assert lib.mt_mean_squared_error_f32(ptr(pred), ptr(target), n, ctypes.c_float(scale), zero,
                                             ptr(loss), ptr(grad)) == 0
        t_loss, t_grad = mean_squared_error(pred[None], target[None], np.float32(scale), zero)
        assert loss.view(np.uint32)[0] == t_loss.view(np.uint32)[0]
        assert np.array_equal(grad.view(np.uint32), t_grad[0].view(np.uint32))
        # the gradient is d/dpred of the mean squared error (torch.autograd, float64)
        p = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
        t = (torch.tensor(target, dtype=torch.float64) - zero) * float(np.float32(scale))
        ref = ((p - t) ** 2).mean()
        ref.backward()
        assert abs(float(loss[0]) - ref.item()) <= 1e-5 * max(1.0, ref.item())
        np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-5, atol=1e-7)
        # in place: the gradient may overwrite the prediction
        alias = pred.copy()
        assert lib.mt_mean_squared_error_f32(ptr(alias), ptr(target), n, ctypes.c_float(scale), zero,
                                             ptr(loss), ptr(alias)) == 0
        assert np.array_equal(alias.view(np.uint32), grad.view(np.uint32))
    assert lib.mt_mean_squared_error_f32(ptr(pred), ptr(target), 0, ctypes.c_float(1.0), 0,
                                         ptr(loss), None) != 0


def _autoencoder():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, (1, FEATURES)).astype(np.float32)
    x = (base + 0.3 * rng.normal(0, 1, (64, FEATURES))).astype(np.float32)
    graph = quantize_autoencoder(build_autoencoder(FEATURES, (16, 4, 16), seed=0).eval(), x, name="ae-test")
    fcs = [n.name for n in graph.nodes if n.op.value == "fully_connected"]
    scheme = make_scheme(graph, bias_layers=fcs[-3:], weight_ratios={fcs[-1]: 1.0, fcs[-2]: 0.5})
    return graph, scheme, quantize_inputs(graph, x)


def test_mse_needs_an_output_of_the_input_size():
    from microtrain.frontend.heads import new_head

    graph, scheme, _ = _autoencoder()
    with pytest.raises(CompileError, match="must be int8 of the input's size"):
        small = new_head(graph, 10)
        compile_training(small, make_scheme(small, bias_layers=[small.nodes[-1].name]), CompileOptions(loss="mse"))
    with pytest.raises(CompileError, match="not one the device computes"):
        compile_training(graph, scheme, CompileOptions(loss="hinge"))


@pytest.mark.target
@pytest.mark.host_c
def test_autoencoder_training_bit_exact_everywhere(tmp_path):
    require_tool("gcc", "gcc")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    from microtrain.targets import cortex_m7, host

    graph, scheme, xq = _autoencoder()
    x = xq[:N]
    opts = CompileOptions(seed=SEED, accumulate=K, lr=LR, lr_schedule="cosine", warmup=WARMUP, steps=STEPS, loss="mse")
    step = compile_training(graph, scheme, opts)
    assert "label" not in step.graph.inputs
    out = generate_project(step, graph, tmp_path / "proj")
    assert "mt_reconstruction_error" in (out / "include" / "mt_model.h").read_text()
    x_test, y_test = xq[N:N + 8], np.zeros(8, np.int32)
    files = {t: write_driver_files(tmp_path / t, x, np.zeros(N, np.int32), steps=STEPS, lr=LR, seed=SEED,
                                   x_test=x_test, y_test=y_test, eval_count=8) for t in ("host", "qemu")}
    runs = {"host": host.run(out, files["host"], exe=host.build(out)), "qemu": cortex_m7.run(out, files["qemu"])}

    # simulator: the device's loss and recipe in torch
    cfg = TrainConfig(optimizer="sgd-qas", lr=LR, batch_size=1, accumulate=K, rounding="stochastic", seed=SEED,
                      schedule="cosine", loss="mse")
    trainer = Trainer(graph, scheme, cfg)
    cache = trainer.cache(x)
    warmup, total = schedule_updates(STEPS, K, WARMUP)
    targets = x.reshape(N, -1)
    sim_losses = []
    for t in range(STEPS // K):
        group = [np.array([s % N]) for s in range(t * K, (t + 1) * K)]
        trainer._step(cache, targets, group, learning_rate("cosine", LR, t, warmup, total))
        sim_losses += trainer.sample_losses
    sim_graph = trainer.final_graph()

    # reference interpreter of the compiled training graph
    trained = [t["name"] for t in step.graph.meta["training"]["trained"]]
    params = optimizer_state_values(step.graph)
    ref_losses = []
    for s in range(STEPS):
        t = s // K
        feeds = {"input": x[s % N][None], "lr": np.array([learning_rate("cosine", LR, t, warmup, total)], np.float32)}
        vals = run_training_graph(step.graph, feeds, params=params, step=t, apply=s % K == K - 1, verify=s == 0)
        params.update({p: vals[p] for p in trained})
        ref_losses.append(vals["loss"][0])

    bits = {name: [f"{b:08x}" for b in r.loss_bits] for name, r in runs.items()}
    bits["simulator"] = [f"{b:08x}" for b in np.array(sim_losses, np.float32).view(np.uint32)]
    bits["reference"] = [f"{b:08x}" for b in np.array(ref_losses, np.float32).view(np.uint32)]
    assert len(bits["qemu"]) == STEPS
    for name in ("host", "simulator", "reference"):
        assert bits[name] == bits["qemu"], f"loss bits: {name} differs from QEMU"
    weights = {name: read_weights(out, r.weights_path) for name, r in runs.items()}
    moved = 0
    for n in trained:
        for name, arr in (("host", weights["host"][n]), ("simulator", sim_graph.tensors[n].data),
                          ("reference", params[n])):
            assert np.array_equal(np.asarray(arr), weights["qemu"][n]), f"{n}: {name} differs from QEMU"
        moved += int(np.sum(weights["qemu"][n] != graph.tensors[n].data))
    assert moved > 0, "training changed no weight: the comparison would prove nothing"

    # anomaly scores: mt_reconstruction_error with the trained weights = the reference's MSE
    trained_graph = sim_graph
    scores = {name: parse_scores(r.stdout) for name, r in runs.items()}
    assert np.array_equal(scores["host"].view(np.uint32), scores["qemu"].view(np.uint32)) and len(scores["qemu"]) == 8
    for i in range(8):
        q = trained_graph.tensors[trained_graph.outputs[0]].quant
        out_q = run_graph(trained_graph, {"input": x_test[i][None]})[trained_graph.outputs[0]]
        pred = ((out_q.astype(np.int32) - q.z).astype(np.float32) * np.float32(q.s)).reshape(1, -1)
        iq = graph.tensors[graph.inputs[0]].quant
        loss, _ = mean_squared_error(pred, x_test[i].reshape(1, -1), iq.s, iq.z)
        assert scores["qemu"][i].view(np.uint32) == loss.view(np.uint32)[0], f"score of sample {i}"
