"""A graph saved at any stage (inference, fused, training) loads and verifies in a fresh
interpreter that imports only ``microtrain.ir``: every op's shape rule lives in the IR's own
registry, none is added by importing the compiler or the interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import zoo_path_or_skip
from test_tflite_autodiff import _window_graph

import microtrain
from microtrain.compiler.fuse_frozen_blocks import fuse_frozen_blocks
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.frontend.tflite import import_tflite
from microtrain.ir import save_graph
from microtrain.ir.ops import Op
from microtrain.scheme import make_scheme
from microtrain.zoo.ad_autoencoder import build_autoencoder, quantize_autoencoder

LOAD = r"""
import json, sys
from microtrain.ir import load_graph, verify_graph
ops = []
for path in sys.argv[1:]:
    g = verify_graph(load_graph(path))
    ops += [n.op.name for n in g.nodes]
others = sorted(m for m in sys.modules if m.startswith("microtrain") and m != "microtrain"
                and not m.startswith("microtrain.ir"))
print(json.dumps({"ops": sorted(set(ops)), "others": others}))
"""


def _stages(tmp_path) -> list[str]:
    graph = toy_mbnet(0, size=12, classes=4, blocks=((2, 8, 2), (3, 8, 1)))
    names = [n.name for n in graph.weighted_nodes()]
    paths = [tmp_path / "inference.json", tmp_path / "fused.json"]
    save_graph(graph, paths[0])
    save_graph(fuse_frozen_blocks(graph), paths[1])
    schemes = [(names[-1:], {"classifier": 1.0}),                       # frozen blocks run fused
               (names[1:], {"blocks.1.pointwise1": 1.0}),                # fused block backward
               (names[1:], {"classifier": 0.5, "blocks.1.depthwise": 0.5}),  # sliced depthwise input
               (names[1:], dict.fromkeys(names[2:], 1.0))]               # full update
    for k, (biases, weights) in enumerate(schemes):
        step = compile_training(graph, make_scheme(graph, biases, weights), CompileOptions())
        paths.append(tmp_path / f"training{k}.json")
        save_graph(step.graph, paths[-1])
    # imported .tflite models: pools, PAD, CONCAT, SOFTMAX (inference) and their gradients (training)
    for name in ("ops_pool_pad", "fashion_mnist_cnn"):
        tfl = import_tflite(Path(__file__).parent / "fixtures" / "tflite" / f"{name}.tflite")
        paths.append(tmp_path / f"{name}.json")
        save_graph(tfl, paths[-1])
        layers = [n.name for n in tfl.weighted_nodes()]
        step = compile_training(tfl, make_scheme(tfl, layers, dict.fromkeys(layers, 1.0)), CompileOptions())
        paths.append(tmp_path / f"{name}_training.json")
        save_graph(step.graph, paths[-1])
    padded = _window_graph(1, Op.PAD, (1, 1), (1, 1), (1, 0, 2, 1), (-128, 127))  # PAD after a trained conv
    step = compile_training(padded, make_scheme(padded, ["conv"], {"conv": 1.0}), CompileOptions())
    paths.append(tmp_path / "pad_training.json")
    save_graph(step.graph, paths[-1])
    # an autoencoder trained on its reconstruction error (MEAN_SQUARED_ERROR, MSE_GRAD)
    x = np.random.default_rng(0).normal(0, 1, (16, 12)).astype(np.float32)
    ae = quantize_autoencoder(build_autoencoder(12, (6, 3, 6)).eval(), x)
    layers = [n.name for n in ae.weighted_nodes()]
    step = compile_training(ae, make_scheme(ae, layers[-2:], {layers[-1]: 1.0}), CompileOptions(loss="mse"))
    paths.append(tmp_path / "autoencoder_training.json")
    save_graph(step.graph, paths[-1])
    return [str(p) for p in paths]


def test_graphs_of_every_stage_verify_with_only_the_ir(tmp_path):
    out = subprocess.run([sys.executable, "-c", LOAD, *_stages(tmp_path)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["others"] == [], f"loading and verifying imported {got['others']}"
    missing = sorted({op.name for op in Op} - set(got["ops"]))
    assert not missing, f"ops no saved graph holds: {missing}"


@pytest.mark.zoo
def test_compiled_zoo_training_graph_verifies_with_only_the_ir(tmp_path):
    zoo_path_or_skip("mbv2-w0.35")
    step = microtrain.compile("mbv2-w0.35", "mbv2-w0.35/99kb", tmp_path / "step", classes=10)
    path = tmp_path / "step" / "training_graph.json"
    code = ("import json, sys\nfrom microtrain.ir import load_graph, verify_graph\n"
            f"g = verify_graph(load_graph({str(path)!r}))\n"
            "print(json.dumps({'nodes': [n.name for n in g.nodes], 'others': sorted(m for m in sys.modules "
            "if m.startswith('microtrain.') and not m.startswith('microtrain.ir'))}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["others"] == []
    assert got["nodes"] == [n.name for n in step.step.graph.nodes]  # the graph the C was emitted from
