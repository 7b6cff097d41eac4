"""Writing a graph back into its .tflite: an untouched import round-trips to a file TFLM runs
exactly as the original; a trained graph (every weight and bias changed, a new head with
another number of classes, a bias the file did not have) exports to a file on which TFLM's
int8 tensors equal microtrain's, bit for bit; the file keeps the original's operators."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tflite_oracle import FIXTURES, fixture_path, inputs, mapped_activations, tflm_interpreter, tflm_run

from microtrain.frontend.heads import new_head
from microtrain.frontend.tflite import import_tflite
from microtrain.frontend.tflite_export import save_tflite
from microtrain.frontend.tflite_schema import TFLiteError, operators, read_model
from microtrain.interp.reference import run_graph
from microtrain.ir import QParams, verify_graph


def _ops(path):
    return [(op.name, len(op.inputs), len(op.outputs)) for op in operators(read_model(path))]


@pytest.mark.parametrize("name", FIXTURES)
def test_round_trip_runs_as_the_original(tmp_path, name):
    graph = import_tflite(fixture_path(name))
    out = save_tflite(graph, tmp_path / f"{name}.tflite")
    assert _ops(out) == _ops(fixture_path(name))
    a, b = tflm_interpreter(fixture_path(name)), tflm_interpreter(out)
    for _, fed in inputs(graph, 1, seed=2):
        for interp in (a, b):
            interp.set_input(fed, 0)
            interp.invoke()
        np.testing.assert_array_equal(a.get_output(0), b.get_output(0))


def _trained(graph, seed):
    """Every weight and bias moved as training moves them (int8 steps, saturating; int32 steps)."""
    rng = np.random.default_rng(seed)
    tensors = dict(graph.tensors)
    for node in graph.weighted_nodes():
        w, b = graph.tensors[node.inputs[1]], graph.tensors[node.inputs[2]]
        dw = rng.integers(-3, 4, w.shape)
        tensors[w.name] = w.with_data(np.clip(w.data.astype(np.int64) + dw, -127, 127).astype(np.int8))
        tensors[b.name] = b.with_data((b.data.astype(np.int64) + rng.integers(-500, 501, b.shape)).astype(np.int32))
    return verify_graph(graph.replace(tensors=tensors))


@pytest.mark.parametrize("name, classes", [("fashion_mnist_cnn", 7), ("ops_pool_pad", None), ("kws_ds_cnn", 3),
                                           ("ad_autoencoder", None), ("mobilenet_v2_035", 4), ("ops_per_tensor", 5),
                                           ("ic_resnet8", None), ("vww_mobilenet_v1_025", 3)])
def test_trained_export_runs_in_tflm_as_in_microtrain(tmp_path, name, classes):
    graph = import_tflite(fixture_path(name))
    if classes is not None:
        graph = new_head(graph, classes, seed=3)
    graph = _trained(graph, seed=4)
    if name == "ops_pool_pad":  # the last dense layer has no bias in the file: training gave it one
        last = graph.weighted_nodes()[-1]
        assert last.inputs[2] not in graph.meta["tflite"]["tensors"] and np.any(graph.tensors[last.inputs[2]].data)
    out = save_tflite(graph, tmp_path / "trained.tflite")
    assert [op[0] for op in _ops(out)] == [op[0] for op in _ops(fixture_path(name))]
    exported = import_tflite(out)
    interp = tflm_interpreter(out)
    mapped = mapped_activations(exported)
    for k, (x, fed) in enumerate(inputs(graph, 1, seed=8)):
        ours = run_graph(graph, {"input": x}, keep_all=True)
        theirs = tflm_run(interp, fed, mapped.values())
        for tensor, index in mapped.items():
            np.testing.assert_array_equal(theirs[index].reshape(ours[tensor].shape), ours[tensor],
                                          err_msg=f"{name} sample {k} tensor {tensor}")
    # what the file holds is what microtrain trained (and it imports back to the same graph)
    for node in graph.weighted_nodes():
        for t in node.inputs[1:]:
            np.testing.assert_array_equal(exported.tensors[t].data, graph.tensors[t].data, err_msg=t)
            assert exported.tensors[t].quant == graph.tensors[t].quant or graph.tensors[t].quant is None


def test_per_tensor_weights_stay_per_tensor(tmp_path):
    """The converter's per-tensor weights (one scale for the whole tensor) are written back with one
    scale, trained or not; a new head gets per-channel scales."""
    graph = _trained(new_head(import_tflite(fixture_path("ops_per_tensor")), 5, seed=1), seed=2)
    model = read_model(save_tflite(graph, tmp_path / "x.tflite"))
    head = graph.weighted_nodes()[-1]
    for node in graph.weighted_nodes():
        index = graph.meta["tflite"]["tensors"][node.inputs[1]][0]
        scales = model.subgraphs[0].tensors[index].quantization.scale
        assert len(scales) == (graph.tensors[node.inputs[1]].shape[0] if node is head else 1), node.name


def test_per_channel_weights_with_equal_scales_stay_per_channel(tmp_path):
    graph = import_tflite(fixture_path("kws_ds_cnn"))
    fc = graph.weighted_nodes()[-1]
    w = graph.tensors[fc.inputs[1]]
    same = dataclasses.replace(w, quant=QParams.per_channel([w.quant.scale[0]] * w.shape[0]))
    out = save_tflite(graph.replace(tensors={**graph.tensors, w.name: same}), tmp_path / "x.tflite")
    model = read_model(out)
    index = graph.meta["tflite"]["tensors"][w.name][0]
    assert len(model.subgraphs[0].tensors[index].quantization.scale) == w.shape[0]  # was per-channel: stays


def test_export_needs_the_original_file(tmp_path):
    src = tmp_path / "m.tflite"
    src.write_bytes(fixture_path("kws_ds_cnn").read_bytes())
    graph = import_tflite(src)
    src.write_bytes(fixture_path("ic_resnet8").read_bytes())
    with pytest.raises(TFLiteError, match="changed since the model was imported"):
        save_tflite(graph, tmp_path / "out.tflite")
    src.unlink()
    with pytest.raises(TFLiteError, match="is gone"):
        save_tflite(graph, tmp_path / "out.tflite")
    from microtrain.models import load_model

    with pytest.raises(TFLiteError, match="not imported from a .tflite"):
        save_tflite(load_model("default"), tmp_path / "out.tflite")
