"""Imported .tflite models learn on the device: the MLPerf Tiny visual-wake-words and
keyword-spotting shapes, each with a new 10-class head and a sparse scheme (biases of the
last layers, some channels of two weights), compile into a training step that links within
256 KB SRAM / 1 MB flash, and train on the emulated Cortex-M7 exactly as on the host; the
host equals the reference training evaluation and the torch simulator bit for bit (losses and
trained tensors, no tolerance). The data are real: digits resized to the model's
input. The exported .tflite of the trained model runs in TFLM as microtrain's model does."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_tool
from test_host_codegen import _reference_training, assert_trained_equal
from tflite_oracle import fixture_path, mapped_activations, tflm_interpreter, tflm_run

from microtrain.codegen.driver_files import read_weights, write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.data.datasets import load_dataset
from microtrain.data.preprocess import preprocess
from microtrain.frontend.heads import new_head
from microtrain.frontend.tflite import import_tflite
from microtrain.frontend.tflite_export import save_tflite
from microtrain.interp.reference import run_graph
from microtrain.scheme import make_scheme
from microtrain.targets import cortex_m7, host
from microtrain.train.loop import TrainConfig, Trainer

pytestmark = [pytest.mark.host_c, pytest.mark.target]
STEPS = 8
LR = np.float32(0.05)


def _sparse(graph):
    names = [n.name for n in graph.weighted_nodes()]
    return make_scheme(graph, names[-3:], {names[-1]: 1.0, names[-2]: 0.5, names[-3]: 0.25})


@pytest.mark.parametrize("name", ["kws_ds_cnn", "vww_mobilenet_v1_025"])
def test_sparse_step_on_cortex_m7_equals_host_reference_and_simulator(tmp_path, name):
    require_tool("gcc", "gcc")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    graph = new_head(import_tflite(fixture_path(name)), 10, seed=1)
    scheme = _sparse(graph)
    step = compile_training(graph, scheme, CompileOptions(rounding="stochastic", seed=3))
    project = generate_project(step, graph, tmp_path / "proj")
    ds = load_dataset("digits", "train", limit=STEPS, seed=0)
    x, y = preprocess(ds.images, graph), ds.labels.astype(np.int32)
    runs = {}
    for target in ("host", "qemu"):
        work = write_driver_files(tmp_path / target, x, y, steps=STEPS, lr=LR, seed=3)
        runs[target] = (host.run(project, work) if target == "host"
                        else cortex_m7.run(project, work, sram="256KB", flash="1MB"))
    h, q = runs["host"], runs["qemu"]
    assert len(q.loss_bits) == STEPS and q.loss_bits == h.loss_bits, "loss bits differ host vs Cortex-M7"
    assert q.weights_path.read_bytes() == h.weights_path.read_bytes(), "trained tensors differ host vs Cortex-M7"
    assert q.memory["sram_bytes"] <= 256 * 1024 and q.memory["flash_bytes"] <= 1024 * 1024
    got = read_weights(project, h.weights_path)
    assert any(np.any(arr != graph.tensors[t].data) for t, arr in got.items()), "nothing trained"
    ref, ref_losses = _reference_training(step, x, y, STEPS)
    ref_bits = np.asarray(ref_losses, np.float32).view(np.uint32)
    assert [f"{b:08x}" for b in h.loss_bits] == [f"{b:08x}" for b in ref_bits], "loss bits differ from the reference"
    trainer = Trainer(graph, scheme, TrainConfig(optimizer="sgd-qas", lr=float(LR), batch_size=1,
                                                 rounding="stochastic", seed=3))
    cache = trainer.cache(x)
    for i in range(STEPS):
        trainer._step(cache, y.astype(np.int64), [np.array([i])], float(LR))
    sim = trainer.final_graph()
    for t, arr in got.items():
        assert_trained_equal(arr, ref[t], f"{name} {t} (C vs reference)")
        assert_trained_equal(arr, sim.tensors[t].data, f"{name} {t} (C vs simulator)")
    # the device's trained model, written back as a .tflite, runs in TFLM as in microtrain
    tensors = dict(graph.tensors)
    for t, arr in got.items():
        tensors[t] = tensors[t].with_data(arr)
    trained = graph.replace(tensors=tensors)
    out = save_tflite(trained, tmp_path / "trained.tflite")
    exported = import_tflite(out)
    interp = tflm_interpreter(out)
    mapped = mapped_activations(exported)
    for i in range(2):
        ours = run_graph(trained, {"input": x[i:i + 1]}, keep_all=True)
        theirs = tflm_run(interp, x[i:i + 1], mapped.values())
        for tensor, index in mapped.items():
            np.testing.assert_array_equal(theirs[index].reshape(ours[tensor].shape), ours[tensor], err_msg=tensor)
