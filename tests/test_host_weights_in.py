"""The driver's import path of trained tensors (``weights_in 1`` + ``mt_weights_in.bin``, written by
``driver_files.write_weights``): a round trip is exact, training continues from the imported tensors
exactly as the simulator does from the same tensors, and a file of the wrong size is refused."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_tool
from test_host_codegen import assert_trained_equal

import microtrain.compiler  # noqa: F401
from microtrain.codegen.driver_files import read_weights, write_driver_files, write_weights
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.scheme import make_scheme
from microtrain.targets import host

pytestmark = pytest.mark.host_c
LR = np.float32(0.05)
STEPS = 12


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    require_tool("gcc", "gcc")
    graph = toy_mbnet(0, size=8, classes=5)
    names = [n.name for n in graph.weighted_nodes()]
    # blocks.1.pointwise1 at ratio 0.5 is stored split (only its kept rows in RAM and in the file)
    scheme = make_scheme(graph, names[3:], {"blocks.1.pointwise1": 0.5, "blocks.1.pointwise2": 1.0,
                                            "classifier": 1.0})
    step = compile_training(graph, scheme, CompileOptions(rounding="stochastic", seed=3))
    out = generate_project(step, graph, tmp_path_factory.mktemp("weights_in"))
    return graph, scheme, out, host.build(out)


def _moved(graph, scheme, out, seed=5):
    """Trained tensors as another device might have left them: kept rows moved, frozen rows as the model's."""
    rng = np.random.default_rng(seed)
    trained = read_weights(out, _run(out, graph, steps=0).weights_path)
    moved = {}
    for name, arr in trained.items():
        new = arr.copy()
        layer = next(n for n in graph.weighted_nodes() if name in n.inputs)
        w = scheme.weight_update(layer.name)
        rows = np.asarray(w.channels) if (w is not None and name == layer.inputs[1]) else np.arange(arr.shape[0])
        lo, hi = (-127, 127) if arr.dtype == np.int8 else (-5000, 5000)
        new[rows] = np.clip(arr[rows].astype(np.int64) + rng.integers(-9, 10, arr[rows].shape), lo, hi)
        moved[name] = new.astype(arr.dtype)
    return moved


def _run(out, graph, steps, weights=None, tmp=None, seed=11):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (8,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
    y = rng.integers(0, 5, 8).astype(np.int32)
    work = write_driver_files(tmp or out / f"run{steps}", x, y, steps=steps, lr=LR, seed=seed,
                              weights_in=weights is not None)
    if weights is not None:
        write_weights(out, weights, work / "mt_weights_in.bin")
    return host.run(out, work, exe=out / "build" / "host" / "mt_main")


def test_round_trip_is_exact(project, tmp_path):
    graph, scheme, out, _exe = project
    moved = _moved(graph, scheme, out)
    got = read_weights(out, _run(out, graph, 0, moved, tmp_path).weights_path)
    assert set(got) == set(moved)
    for name in moved:
        np.testing.assert_array_equal(got[name], moved[name], err_msg=name)
    assert any(np.any(moved[n] != graph.tensors[n].data) for n in moved), "the imported tensors must differ"


def test_training_continues_from_imported_tensors_as_the_simulator_does(project, tmp_path):
    from microtrain.train.loop import TrainConfig, Trainer

    graph, scheme, out, _exe = project
    moved = _moved(graph, scheme, out)
    got = read_weights(out, _run(out, graph, STEPS, moved, tmp_path).weights_path)
    start = graph.replace(tensors={**graph.tensors, **{n: graph.tensors[n].with_data(a) for n, a in moved.items()}})
    trainer = Trainer(start, scheme, TrainConfig(optimizer="sgd-qas", lr=float(LR), batch_size=1,
                                                 rounding="stochastic", seed=11))
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (8,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
    y = rng.integers(0, 5, 8).astype(np.int64)
    cache = trainer.cache(x)
    for i in range(STEPS):
        trainer._step(cache, y, [np.array([i % 8])], float(LR))
    sim = trainer.final_graph()
    for name, arr in got.items():
        assert_trained_equal(arr, sim.tensors[name].data, f"{name} (C from imported tensors vs simulator)")
    assert any(np.any(got[n] != moved[n]) for n in got), "training from the imported tensors changed nothing"


def test_wrong_size_is_refused(project, tmp_path):
    graph, scheme, out, _exe = project
    moved = _moved(graph, scheme, out)
    work = write_driver_files(tmp_path, np.zeros((1,) + graph.tensors[graph.inputs[0]].shape[1:], np.int8),
                              np.zeros(1, np.int32), steps=0, lr=LR, weights_in=True)
    path = write_weights(out, moved, work / "mt_weights_in.bin")
    data = path.read_bytes()
    for bad, why in ((data[:-1], "too short"), (data + b"\0", "longer than")):
        path.write_bytes(bad)
        with pytest.raises(RuntimeError, match=why):
            host.run(out, work, exe=out / "build" / "host" / "mt_main")
    path.unlink()
    with pytest.raises(RuntimeError, match="cannot open mt_weights_in.bin"):
        host.run(out, work, exe=out / "build" / "host" / "mt_main")
    with pytest.raises(ValueError, match="the project trains"):
        write_weights(out, {**moved, next(iter(moved)): np.zeros(3, np.int8)}, tmp_path / "x.bin")
