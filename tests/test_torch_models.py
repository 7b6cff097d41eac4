"""Importing whole networks: the MCU-zoo architectures, the default CNN, the batched twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import zoo_path_or_skip

from microtrain.frontend.torch_fx import import_torch_module
from microtrain.interp.batched import infer_batch
from microtrain.interp.reference import infer
from microtrain.ir.ops import Op
from microtrain.sim.random_graph import random_graph, random_inputs
from microtrain.zoo import default_cnn

mcu_nets = pytest.importorskip("microtrain.zoo.mcu_nets")

# (convs, residual adds) of the published files (shared/models/README.md)
ZOO_COUNTS = {"mcunet-5fps": (42, 7), "mbv2-w0.35": (51, 10), "proxyless-w0.3": (60, 13)}
ZOO_PREPROCESS = {"resolution": [128, 128], "channels": 3, "range": [-1.0, 1.0]}


@pytest.fixture(scope="module", params=sorted(ZOO_COUNTS))
def imported_mcu_net(request):
    torch.manual_seed(0)
    module = mcu_nets.build_mcu_net(request.param, num_classes=10).eval()
    graph = import_torch_module(module, (1, 3, 128, 128), torch.rand(4, 3, 128, 128) * 2 - 1,
                                preprocess=ZOO_PREPROCESS)
    return request.param, graph


def test_mcu_nets_import_with_zoo_structure(imported_mcu_net):
    name, graph = imported_mcu_net
    convs, adds = ZOO_COUNTS[name]
    layers = graph.weighted_nodes()
    assert len(layers) == convs + 1 and layers[0].name == "first_conv" and layers[-1].name == "classifier"
    assert sum(n.op is Op.ADD for n in graph.nodes) == adds
    assert all(n.name.endswith(".residual") for n in graph.nodes if n.op is Op.ADD)
    assert {n.name.split(".")[-1] for n in layers[1:-1]} <= {"pointwise1", "depthwise", "pointwise2"}
    assert graph.tensors["classifier.out"].shape == (1, 10)


@pytest.mark.zoo
def test_mcu_nets_match_the_published_graphs_node_for_node(imported_mcu_net):
    from microtrain.frontend.mcu_zoo import import_zoo_model

    name, graph = imported_mcu_net
    zoo = import_zoo_model(zoo_path_or_skip(name))
    assert [(n.name, n.op) for n in graph.nodes] == [(n.name, n.op) for n in zoo.nodes]
    for ours, theirs in zip(graph.nodes[:-1], zoo.nodes[:-1], strict=True):  # the classifier has 10, not 1000
        assert graph.tensors[ours.outputs[0]].shape == zoo.tensors[theirs.outputs[0]].shape, ours.name
        if ours.op is Op.CONV2D:
            assert graph.tensors[ours.inputs[1]].shape == zoo.tensors[theirs.inputs[1]].shape, ours.name
            assert ours.attrs["stride"] == tuple(theirs.attrs["stride"]), ours.name
            assert tuple(ours.attrs["padding"]) == tuple(theirs.attrs["padding"]), ours.name


def test_batched_interpreter_is_bit_exact_with_the_reference():
    graph = random_graph(seed=3, resolution=9, channels=3, width=8, blocks=3)
    x = random_inputs(graph, 6, seed=1)
    batched = infer_batch(graph, x)
    reference = np.concatenate([infer(graph, x[i:i + 1]) for i in range(len(x))])
    assert np.array_equal(batched, reference)


def test_default_cnn_size_and_committed_graph():
    module = default_cnn.build_default_cnn()
    params = sum(p.numel() for p in module.parameters())
    assert 20_000 <= params <= 60_000
    if not default_cnn.INT8_GRAPH.with_suffix(".json").exists():
        pytest.skip("committed default checkpoint absent (scripts/make_default_checkpoint.py)")
    graph = default_cnn.load_default_graph()
    assert graph.meta["preprocess"] == default_cnn.PREPROCESS
    assert [n.name for n in graph.weighted_nodes()][:4] == [
        "first_conv", "blocks.0.pointwise1", "blocks.0.depthwise", "blocks.0.pointwise2"]
    assert graph.tensors["input"].quant.scale == (1 / 255,) and graph.tensors["input"].quant.zero_point == (-128,)


@pytest.mark.skipif(not default_cnn.FLOAT_CHECKPOINT.exists(), reason="committed float checkpoint absent")
def test_default_cnn_ptq_agrees_with_float_on_fashion_mnist():
    """Re-quantize the committed float checkpoint; int8 (reference interpreter) vs float on 100 images."""
    from microtrain.data.datasets import load_dataset
    from microtrain.data.preprocess import preprocess

    try:
        calib = load_dataset("fashion-mnist", "train", limit=256, seed=0)
        test = load_dataset("fashion-mnist", "test", limit=100, seed=0)
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model = default_cnn.load_default_float()
    graph = import_torch_module(model, (1, 1, 28, 28), default_cnn.to_float_input(calib.images),
                                input_quant=default_cnn.INPUT_QUANT, preprocess=default_cnn.PREPROCESS)
    x = preprocess(test.images, graph)
    int8_pred = np.array([int(infer(graph, x[i:i + 1]).argmax()) for i in range(len(x))])
    with torch.no_grad():
        float_pred = model(default_cnn.to_float_input(test.images)).argmax(1).numpy()
    assert np.mean(int8_pred == float_pred) >= 0.95  # top-1 agreement; accuracy itself: benchmarks/ptq.py
    assert np.mean(int8_pred == test.labels) >= 0.8


@pytest.mark.skipif(not default_cnn.FLOAT_CHECKPOINT.exists(), reason="committed float checkpoint absent")
def test_demo_runs_its_steps_on_a_subset(capsys):
    from microtrain import demo

    try:
        code = demo.main(["--test-limit", "40", "--no-device"])  # steps 6-9: tests/test_demo_ondevice.py
    except FileNotFoundError as e:
        pytest.skip(str(e))
    out = capsys.readouterr().out
    if code == 2:
        pytest.skip("Fashion-MNIST absent")
    for step in ("1. float model", "2. data", "3. post-training quantization", "4. accuracy", "5. int8 model"):
        assert f"== {step}" in out
    assert "40 test images (class-balanced subset of 40)" in out and "blocks.4.residual" in out
