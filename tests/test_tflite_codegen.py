"""The generated C of every imported .tflite fixture gives TFLite Micro's int8 outputs bit for
bit, on the host (gcc) and on the emulated Cortex-M7 (QEMU mps2-an500), for random and real
inputs: the compiled project's inference entry point (``mt_infer``: the int8 forward, and
TFLM's int8 SOFTMAX when the model ends in one) against the ``tflite-micro`` interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_tool
from test_host_codegen import LR, _reference_training, assert_trained_equal
from tflite_oracle import FIXTURES, fixture_path, inputs, tflm_interpreter

from microtrain import quant
from microtrain.codegen.driver_files import read_weights, write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.frontend.tflite import import_tflite
from microtrain.ir.logits import logits_name
from microtrain.scheme import make_scheme
from microtrain.targets import cortex_m7, host

pytestmark = [pytest.mark.host_c]


def _outputs(stdout: str) -> np.ndarray:
    rows = [line.split()[2:] for line in stdout.splitlines() if line.startswith("logits ")]
    return np.array(rows, dtype=np.int64)


def _tflm_outputs(graph, samples) -> np.ndarray:
    interp = tflm_interpreter(fixture_path(graph.meta["model"]))
    edge = graph.meta["tflite"]["edges"]["output"]
    out = []
    for _, fed in samples:
        interp.set_input(fed, 0)
        interp.invoke()
        y = interp.get_output(0).reshape(-1)
        if edge["float"]:  # TFLM dequantized its int8 output; compare the codes (dequantize is injective)
            codes = np.round(y.astype(np.float64) / edge["scale"]).astype(np.int64) + edge["zero_point"]
            assert np.array_equal(quant.dequantize_tflm(codes, edge["scale"], edge["zero_point"]), y)
            y = codes
        out.append(y.astype(np.int64))
    return np.array(out)


def _project(tmp_path, name, train_all=False):
    """The compiled project: the last layer's bias trained, or (``train_all``) every weight and bias,
    so that the generated backward runs through every op of the model."""
    graph = import_tflite(fixture_path(name))
    names = [n.name for n in graph.weighted_nodes()]
    scheme = (make_scheme(graph, names, dict.fromkeys(names, 1.0)) if train_all
              else make_scheme(graph, names[-1:], {}))
    step = compile_training(graph, scheme, CompileOptions())
    assert step.graph.meta["training"]["logits"] == logits_name(graph)
    return graph, step, generate_project(step, graph, tmp_path / "proj")


def _workdir(tmp_path, graph, samples, sub):
    x = np.concatenate([s for s, _ in samples])
    y = np.zeros(len(x), np.int32)
    return write_driver_files(tmp_path / sub, x, y, steps=0, lr=0.0, x_test=x, y_test=y, eval_count=len(x))


EDGE_CASES = ("ops_per_tensor", "ops_pool_pad")  # small: trained whole, through PAD(V2), pools, CONCAT, MEAN


@pytest.mark.parametrize("name", FIXTURES)
def test_host_c_equals_tflm(tmp_path, name):
    require_tool("gcc", "gcc")
    graph, step, project = _project(tmp_path, name, train_all=name in EDGE_CASES)
    samples = inputs(graph, 2, seed=5)
    exe = host.build(project, defines=("MT_DEBUG_LOGITS",))
    run = host.run(project, _workdir(tmp_path, graph, samples, "host"), exe=exe)
    np.testing.assert_array_equal(_outputs(run.stdout), _tflm_outputs(graph, samples), err_msg=name)
    if name in EDGE_CASES:  # the same build trains: every trained tensor equals the reference training's
        x = np.concatenate([s for s, _ in samples])
        y = np.arange(len(x), dtype=np.int32) % graph.tensors[graph.outputs[0]].shape[-1]
        trained = host.run(project, write_driver_files(tmp_path / "train", x, y, steps=4, lr=LR), exe=exe)
        ref, ref_losses = _reference_training(step, x, y, 4)
        assert trained.loss_bits == list(np.asarray(ref_losses, np.float32).view(np.uint32)), name
        got = read_weights(project, trained.weights_path)
        assert set(got) == set(ref) and all(np.any(got[t] != graph.tensors[t].data) for t in got), "untrained"
        for t, arr in got.items():
            assert_trained_equal(arr, ref[t], f"{name} {t}")


@pytest.mark.target
@pytest.mark.parametrize("name", FIXTURES)
def test_cortex_m7_equals_tflm(tmp_path, name):
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    graph, _, project = _project(tmp_path, name)
    samples = inputs(graph, 1, seed=6)
    run = cortex_m7.run(project, _workdir(tmp_path, graph, samples, "qemu"), defines=("MT_DEBUG_LOGITS",))
    np.testing.assert_array_equal(_outputs(run.stdout), _tflm_outputs(graph, samples), err_msg=name)
