"""The public Python API: every model spec loads, models round-trip, run_int8 is the device's
integers, prepare resolves head and scheme, quantize turns a torch module into a verified
int8 graph, and importing the IR does not load the API (nor torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import zoo_path_or_skip
from torch import nn

import microtrain as mt
from microtrain.data.preprocess import preprocess
from microtrain.interp.reference import run_graph
from microtrain.ir import verify_graph


def test_every_model_spec_loads(tmp_path):
    graph = mt.load_model("default")
    path = mt.save_model(graph, tmp_path / "m.json")
    assert path == tmp_path / "m.json" and (tmp_path / "m.npz").exists()
    again = mt.load_model(path)
    assert [n.name for n in again.nodes] == [n.name for n in graph.nodes]
    assert all(np.array_equal(t.data, again.tensors[k].data) for k, t in graph.tensors.items() if t.is_const)
    assert mt.load_model(tmp_path / "m") is not None  # the stem of a .json + .npz pair
    assert mt.load_model(graph) is graph
    with pytest.raises(mt.UserError, match="unknown model 'nonsense'"):
        mt.load_model("nonsense")
    with pytest.raises(mt.UserError, match="no such file"):
        mt.load_model(tmp_path / "absent.pkl")


@pytest.mark.zoo
def test_zoo_name_and_file_load_the_same_graph():
    path = zoo_path_or_skip("mcunet-5fps")
    by_name, by_file = mt.load_model("mcunet-5fps"), mt.load_model(path)
    assert [n.name for n in by_name.nodes] == [n.name for n in by_file.nodes]


def test_run_int8_is_the_reference_interpreter():
    graph = mt.load_model("default")
    rng = np.random.default_rng(0)
    x = preprocess(rng.integers(0, 256, (5, 28, 28)).astype(np.uint8), graph)
    got = mt.run_int8(graph, x)
    (name,) = graph.inputs
    want = np.concatenate([run_graph(graph, {name: x[i:i + 1]})[graph.outputs[0]] for i in range(5)])
    assert got.dtype == np.int8 and np.array_equal(got, want)
    with pytest.raises(mt.UserError, match="int8"):
        mt.run_int8(graph, x.astype(np.float32))


def test_prepare_gives_a_new_head_and_resolves_the_scheme():
    p = mt.prepare("default", classes=4, scheme="last-k:2", seed=3)
    assert p.graph.tensors[p.graph.outputs[0]].shape == (1, 4)
    assert p.scheme is not None and len(p.scheme.updated_layers()) == 2
    assert mt.prepare("default").scheme is None
    with pytest.raises(mt.UserError, match="--scheme"):
        mt.prepare("default", scheme="last-k:999")
    with pytest.raises(mt.UserError, match="--classes 0"):
        mt.prepare("default", classes=0)


def test_compile_refuses_an_unknown_packs_setting_before_any_work(tmp_path):
    with pytest.raises(mt.UserError, match="--packs fast: choose auto, full, words, off"):
        mt.compile("default", "last-k:2", tmp_path / "proj", packs="fast")
    assert not (tmp_path / "proj").exists()


def test_quantize_a_torch_module():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           nn.Linear(4, 3))
    calib = np.random.default_rng(1).uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)
    graph = mt.quantize(module, calib, input_range=(0.0, 1.0))
    verify_graph(graph)
    assert graph.tensors[graph.inputs[0]].shape == (1, 8, 8, 1)
    assert graph.tensors[graph.outputs[0]].shape == (1, 3)
    with pytest.raises(mt.UserError, match="calibration"):
        mt.quantize(module, calib[0])


def test_the_ir_alone_does_not_load_the_api():
    code = ("import json, sys, microtrain.ir; print(json.dumps(sorted(m for m in sys.modules "
            "if m.startswith(('microtrain.api', 'torch')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
