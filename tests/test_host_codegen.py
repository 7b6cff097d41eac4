"""Generated C on the host: forward bit-exact with the reference interpreter, 20 training steps
equal to the reference training-step evaluation, the planned arena is what the run touches."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import default_cnn_with_scheme, require_tool

import microtrain.compiler  # noqa: F401
from microtrain.codegen.driver_files import read_weights, write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.interp.reference import infer
from microtrain.interp.training import run_training_graph
from microtrain.scheme import make_scheme
from microtrain.targets import host

pytestmark = pytest.mark.host_c
STEPS = 20
LR = np.float32(0.05)


def _project(tmp_path_factory, graph, scheme, options: CompileOptions | None = None, name="proj"):
    require_tool("gcc", "gcc")
    step = compile_training(graph, scheme, options or CompileOptions())
    out = generate_project(step, graph, tmp_path_factory.mktemp(name))
    exe = host.build(out, defines=("MT_DEBUG_ARENA", "MT_DEBUG_LOGITS"))
    return step, out, exe


def _data(graph, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
    k = graph.tensors[graph.outputs[0]].shape[1]
    return x, rng.integers(0, k, n).astype(np.int32)


def _reference_training(step, x, y, steps):
    params = {}
    losses = []
    trained = [t["name"] for t in step.graph.meta["training"]["trained"]]
    for i in range(steps):
        feeds = {"input": x[i % len(y)][None], "label": np.array([y[i % len(y)]], np.int32),
                 "lr": np.array([LR], np.float32)}
        vals = run_training_graph(step.graph, feeds, params=params, step=i, verify=(i == 0))
        params = {p: vals[p] for p in trained}
        losses.append(float(vals["loss"][0]))
    return params, losses


def assert_trained_equal(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Trained int8/int32 tensors: equal, element for element. (Every kernel, the loss included, is
    a fixed sequence of float32 operations shared with the reference and the simulator: the loss's
    exp/log are the libm-free mt_expf/mt_logf, so there is no tolerance.)"""
    diff = np.flatnonzero(got.reshape(-1) != np.asarray(ref).reshape(-1))
    assert diff.size == 0, (f"{what}: {diff.size} of {got.size} elements differ; first at {int(diff[0])}: "
                            f"{got.reshape(-1)[diff[0]]} vs {np.asarray(ref).reshape(-1)[diff[0]]}")


def _touched(step) -> int:
    return max(b.offset + b.used for b in step.plan.buffers)


def _check_project(tmp_path, graph, step, out, exe, steps=STEPS, n=8):
    x, y = _data(graph, n, 1)
    # forward: every logit bit-exact with the reference interpreter
    work = write_driver_files(tmp_path / "infer", x, y, steps=0, lr=LR, x_test=x, y_test=y, eval_count=len(y))
    res = host.run(out, work, exe=exe)
    logits = [list(map(int, line.split()[2:])) for line in res.stdout.splitlines() if line.startswith("logits")]
    assert len(logits) == len(y)
    for i in range(len(y)):
        assert logits[i] == infer(graph, x[i][None])[0].tolist(), f"sample {i}: C logits differ"
    # 20 training steps at batch 1
    work = write_driver_files(tmp_path / "train", x, y, steps=steps, lr=LR)
    res = host.run(out, work, exe=exe)
    assert len(res.losses) == steps
    ref, ref_losses = _reference_training(step, x, y, steps)
    got = read_weights(out, res.weights_path)
    assert set(got) == set(ref)
    changed = 0
    for name in ref:
        init = graph.tensors[name].data
        changed += int(np.sum(got[name] != init))
        assert_trained_equal(got[name], ref[name], f"{name} after {steps} steps")
    assert changed > 0, "training changed no weight: the test would prove nothing"
    ref_bits = np.asarray(ref_losses, np.float32).view(np.uint32)
    assert [f"{b:08x}" for b in res.loss_bits] == [f"{b:08x}" for b in ref_bits], "loss bits differ from the reference"
    # the planner's arena is exactly what the run touches
    assert res.arena_high_water == _touched(step)
    assert step.plan.arena_bytes - 8 < res.arena_high_water <= step.plan.arena_bytes


def test_toy_sparse_scheme_bit_exact(tmp_path_factory, tmp_path):
    graph = toy_mbnet(0, size=8, classes=5)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[3:], {"blocks.1.pointwise1": 0.5, "blocks.1.depthwise": 0.5,
                                            "blocks.1.pointwise2": 1.0, "classifier": 1.0})
    step, out, exe = _project(tmp_path_factory, graph, scheme)
    _check_project(tmp_path, graph, step, out, exe)


def test_toy_full_update_no_reorder_stochastic(tmp_path_factory, tmp_path):
    graph = toy_mbnet(4, size=6, blocks=((2, 8, 2), (2, 8, 1)), classes=3)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names, {n: 1.0 for n in names})
    step, out, exe = _project(tmp_path_factory, graph, scheme,
                              CompileOptions(reorder=False, rounding="stochastic", seed=0))
    _check_project(tmp_path, graph, step, out, exe)


def test_default_cnn_bit_exact(tmp_path_factory, tmp_path):
    graph, scheme = default_cnn_with_scheme()
    step, out, exe = _project(tmp_path_factory, graph, scheme, name="default")
    _check_project(tmp_path, graph, step, out, exe)


def test_toy_banded_early_stage_bit_exact(tmp_path_factory, tmp_path):
    graph = toy_mbnet(5, size=32, blocks=((4, 8, 2), (2, 8, 1)), classes=4)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[-4:], {"blocks.1.pointwise2": 1.0, "classifier": 1.0})
    # fuse_blocks off: fusing the frozen block 0 would leave no conv chain to band
    step, out, exe = _project(tmp_path_factory, graph, scheme, CompileOptions(fuse_blocks=False), name="banded")
    banded = [n.name for n in step.graph.nodes if "band" in n.attrs]
    assert banded[:2] == ["first_conv", "blocks.0.pointwise1"], banded
    _check_project(tmp_path, graph, step, out, exe, steps=8)


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_c_training_equals_the_simulator(tmp_path_factory, tmp_path, rounding):
    """20 steps at batch 1: the generated C and the torch simulator (train/loop.py) agree bit for bit."""
    from microtrain.train.loop import TrainConfig, Trainer

    graph = toy_mbnet(0, size=8, classes=5)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[3:], {"blocks.1.pointwise1": 0.5, "blocks.1.depthwise": 0.5,
                                            "blocks.1.pointwise2": 1.0, "classifier": 1.0})
    step, out, exe = _project(tmp_path_factory, graph, scheme, CompileOptions(rounding=rounding, seed=7),
                              name=f"sim_{rounding}")
    x, y = _data(graph, 8, 1)
    work = write_driver_files(tmp_path, x, y, steps=STEPS, lr=LR, seed=7)
    got = read_weights(out, host.run(out, work, exe=exe).weights_path)
    trainer = Trainer(graph, scheme, TrainConfig(optimizer="sgd-qas", lr=float(LR), batch_size=1,
                                                 rounding=rounding, seed=7))
    cache = trainer.cache(x)
    for i in range(STEPS):
        trainer._step(cache, y.astype(np.int64), [np.array([i % len(y)])], float(LR))
    sim = trainer.final_graph()
    for name, arr in got.items():
        assert_trained_equal(arr, sim.tensors[name].data, f"{name} (C vs simulator)")
    assert any(np.any(arr != graph.tensors[name].data) for name, arr in got.items())
