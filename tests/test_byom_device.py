"""A user's own networks, CLI only, from a .py + checkpoint (and a .pt2, and onnxruntime's int8
ONNX) to training on the emulated Cortex-M7: quantize -> plan -> compile -> run on QEMU, with the
same losses and trained weights as the host build and the torch simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from byom_support import KWS, RESIDUAL, cli, train_float, user_net
from conftest import require_tool
from test_host_codegen import assert_trained_equal

from microtrain.ir import load_graph
from microtrain.runtime.schedule import learning_rate

pytestmark = [pytest.mark.target, pytest.mark.host_c, pytest.mark.slow]
STEPS, LR = 40, 0.01
PLAN = ["--data", "fashion-mnist", "--classes", "10", "--budget", "96KB", "--limit", "60", "--val-limit", "40",
        "--epochs", "1", "--candidates", "2", "--evaluations", "6", "--lr", "0.01", "--workers", "1"]


@pytest.fixture(scope="module", autouse=True)
def tools():
    for tool, pkg in (("gcc", "gcc"), ("arm-none-eabi-gcc", "gcc-arm-none-eabi"), ("qemu-system-arm",
                                                                                   "qemu-system-arm")):
        require_tool(tool, pkg)


def _device_chain(capsys, tmp_path, model: str, plan: bool = True, scheme: str = "last-k:2") -> None:
    """plan (or a fixed scheme) -> compile for Cortex-M7 -> run on QEMU and on the host ->
    the reference training interpreter and the torch simulator, every step."""
    from microtrain.api.run import samples
    from microtrain.sparse.presets import load_scheme

    if plan:
        scheme = str(tmp_path / "scheme.json")
        doc = cli(capsys, ["plan", model, *PLAN, "--out", scheme, "--analysis", str(tmp_path / "analysis")])
        assert doc["peak_bytes"] <= 96 * 1024
    proj = tmp_path / "proj"
    cli(capsys, ["compile", model, "--scheme", scheme, "--target", "cortex-m7", "--out", str(proj)])
    args = ["--data", "fashion-mnist", "--steps", str(STEPS), "--eval", "20", "--lr", str(LR)]
    q = cli(capsys, ["run", str(proj), "--target", "qemu", *args, "--workdir", str(tmp_path / "q")])
    h = cli(capsys, ["run", str(proj), "--target", "host", *args, "--workdir", str(tmp_path / "h")])
    assert q["loss_bits"] == h["loss_bits"] and len(q["loss_bits"]) == STEPS
    assert (q["eval_correct"], q["eval_total"]) == (h["eval_correct"], 20)
    assert (tmp_path / "q" / "mt_weights.bin").read_bytes() == (tmp_path / "h" / "mt_weights.bin").read_bytes()
    assert 0 < q["memory"]["sram_bytes"] <= 256 * 1024
    # The device's loss bits and trained tensors are the reference training interpreter's (the
    # written-down semantics) and the torch simulator's after every one of the STEPS steps, with the
    # run's schedule (warm-up + cosine) and stochastic rounding: no tolerance.
    graph = load_graph(proj / "model")
    sch = load_scheme(scheme, graph)
    x, y = samples("fashion-mnist", "train", STEPS, graph, 0)
    sched = q["lr_schedule"]
    rates = [learning_rate(sched["kind"], LR, t, sched["warmup_updates"], sched["total_updates"]) for t in range(STEPS)]
    ref_losses, ref = _reference_training(graph, sch, x, y, rates)
    sim_losses, sim = _simulator_training(graph, sch, x, y, rates)
    assert [f"{b:08x}" for b in ref_losses.view(np.uint32)] == q["loss_bits"], "loss bits: reference vs device"
    assert [f"{b:08x}" for b in sim_losses.view(np.uint32)] == q["loss_bits"], "loss bits: simulator vs device"
    trained = load_graph(q["exported"])
    assert any(not np.array_equal(trained.tensors[n].data, graph.tensors[n].data) for n in ref)
    for name, arr in ref.items():
        assert_trained_equal(trained.tensors[name].data, arr, f"{name} (device vs reference training)")
        assert_trained_equal(sim.tensors[name].data, arr, f"{name} (simulator vs reference training)")


def _reference_training(graph, scheme, x, y, rates):
    import microtrain.compiler  # noqa: F401
    from microtrain.compiler.pipeline import CompileOptions, compile_training
    from microtrain.interp.training import optimizer_state_values, run_training_graph

    step = compile_training(graph, scheme, CompileOptions())
    names = [t["name"] for t in step.graph.meta["training"]["trained"]]
    params = optimizer_state_values(step.graph)
    losses = []
    for i, rate in enumerate(rates):
        feeds = {"input": x[i][None], "label": np.array([y[i]], np.int32), "lr": np.array([rate], np.float32)}
        vals = run_training_graph(step.graph, feeds, params=params, step=i, verify=(i == 0))
        params.update({p: vals[p] for p in names})
        losses.append(vals["loss"][0])
    return np.array(losses, np.float32), {p: params[p] for p in names}


def _simulator_training(graph, scheme, x, y, rates):
    from microtrain.train.loop import TrainConfig, Trainer

    trainer = Trainer(graph, scheme, TrainConfig(optimizer="sgd-qas", lr=LR, batch_size=1, seed=0))
    cache = trainer.cache(x)
    losses = []
    for i, rate in enumerate(rates):
        trainer._step(cache, y.astype(np.int64), [np.array([i])], rate)
        losses += trainer.sample_losses
    return np.array(losses, np.float32), trainer.final_graph()


def test_residual_net_py_checkpoint_to_qemu(tmp_path, capsys):
    res = train_float(user_net(RESIDUAL), "image")
    torch.save(res.state_dict(), tmp_path / "residual.pt")
    doc = cli(capsys, ["quantize", str(tmp_path / "residual.pt"), "--arch", RESIDUAL, "--calib-data",
                       "fashion-mnist", "--calib-samples", "200", "--out", str(tmp_path / "residual")])
    _device_chain(capsys, tmp_path, doc["model"])


def test_kws_conv1d_pt2_to_qemu(tmp_path, capsys):
    kws = train_float(user_net(KWS), "signal")
    torch.export.save(torch.export.export(kws, (torch.zeros(1, 28, 28),)), tmp_path / "kws.pt2")
    doc = cli(capsys, ["quantize", str(tmp_path / "kws.pt2"), "--calib-data", "fashion-mnist", "--calib-samples",
                       "200", "--out", str(tmp_path / "kws")])
    assert doc["source"] == "torch.export"
    _device_chain(capsys, tmp_path, doc["model"])
