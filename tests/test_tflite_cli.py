"""The CLI with .tflite models: `finetune --export x.tflite` and `compile` + `run --export
x.tflite` write files on which TFLM computes what microtrain's trained model computes;
`--input-range` is stored in the models written; bad values are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_tool
from tflite_oracle import fixture_path, tflm_interpreter

from microtrain.codegen.driver_files import read_weights
from microtrain.interp.reference import run_graph
from microtrain.ir import load_graph

MODEL = str(fixture_path("fashion_mnist_cnn"))


@pytest.fixture
def cli(capsys):
    """Run a verb in this process: (exit code, stdout, stderr)."""
    from microtrain.cli import main

    def run(*args):
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


def _same_in_tflm(graph, path, n=4):
    interp = tflm_interpreter(path)
    rng = np.random.default_rng(0)
    for _ in range(n):
        x = rng.integers(-128, 128, graph.tensors["input"].shape).astype(np.int8)
        interp.set_input(x, 0)
        interp.invoke()
        np.testing.assert_array_equal(interp.get_output(0), run_graph(graph, {"input": x})[graph.outputs[0]])


def test_finetune_exports_a_tflite_tflm_agrees_with(tmp_path, cli):
    code, out, err = cli("finetune", MODEL, "--data", "digits", "--classes", "10", "--scheme", "last-k:2",
                          "--epochs", "1", "--limit", "80", "--test-limit", "40", "--input-range", "0,1",
                          "--out", str(tmp_path / "ft"), "--export", str(tmp_path / "digits.tflite"), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["exported"] == str(tmp_path / "digits.tflite")
    trained = load_graph(tmp_path / "ft" / "model")
    assert trained.meta["preprocess"]["range"] == [0.0, 1.0]
    assert trained.tensors[trained.outputs[0]].shape == (1, 10)
    _same_in_tflm(trained, tmp_path / "digits.tflite")


@pytest.mark.host_c
def test_compile_run_export_on_the_host(tmp_path, cli):
    require_tool("gcc", "gcc")
    code, _, err = cli("compile", MODEL, "--classes", "10", "--scheme", "last-k:2", "--input-range=-1,1",
                        "--out", str(tmp_path / "proj"))
    assert code == 0, err
    project = load_graph(tmp_path / "proj" / "model")
    assert project.meta["preprocess"]["range"] == [-1.0, 1.0]
    code, out, err = cli("run", str(tmp_path / "proj"), "--target", "host", "--data", "digits", "--steps", "20",
                          "--export", str(tmp_path / "trained.tflite"), "--workdir", str(tmp_path / "work"), "--json")
    assert code == 0, err
    assert json.loads(out)["exported"] == str(tmp_path / "trained.tflite")
    tensors = dict(project.tensors)
    weights = read_weights(tmp_path / "proj", tmp_path / "work" / "mt_weights.bin")
    for name, arr in weights.items():
        tensors[name] = tensors[name].with_data(arr)
    assert any(np.any(arr != project.tensors[name].data) for name, arr in weights.items())
    _same_in_tflm(project.replace(tensors=tensors), tmp_path / "trained.tflite")


@pytest.mark.parametrize("value, expected", [("1", "give two numbers"), ("1,0", "LO must be below HI"),
                                             ("a,b", "give two numbers")])
def test_bad_input_range_is_one_line(value, expected, cli):
    code, _, err = cli("eval", MODEL, "--data", "digits", "--limit", "10", "--input-range", value)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_export_of_a_model_not_from_a_tflite_is_refused(tmp_path, cli):
    code, _, err = cli("finetune", "default", "--data", "digits", "--classes", "10", "--scheme", "classifier-only",
                        "--epochs", "1", "--limit", "20", "--test-limit", "20", "--out", str(tmp_path / "ft"),
                        "--export", str(tmp_path / "x.tflite"))
    assert code == 2 and "not imported from a .tflite" in err and len(err.strip().splitlines()) == 1, err


def test_predict_ranks_by_the_models_own_softmax(tmp_path, cli):
    """A .tflite ending in SOFTMAX outputs probabilities: `predict` prints them (TFLM's int8 output,
    dequantized), ranks by them, and shows the SOFTMAX's input as the logits."""
    from PIL import Image

    from microtrain.data.datasets import load_dataset
    from microtrain.data.preprocess import preprocess
    from microtrain.frontend.tflite import import_tflite

    ds = load_dataset("fashion-mnist", "test", limit=2, seed=0)
    paths = []
    for i, img in enumerate(ds.images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    code, out, err = cli("predict", MODEL, *map(str, paths), "--top", "10", "--json")
    assert code == 0, err
    graph = import_tflite(MODEL)
    q = graph.tensors[graph.outputs[0]].quant
    interp = tflm_interpreter(MODEL)
    for doc, img in zip(json.loads(out)["predictions"], ds.images, strict=True):
        interp.set_input(preprocess(img[None], graph), 0)
        interp.invoke()
        tflm = interp.get_output(0).reshape(-1).astype(np.int64)
        top = doc["top"]
        assert top[0]["class"] == int(np.argmax(tflm))
        for t in top:
            assert t["prob"] == pytest.approx(float(q.s * (tflm[t["class"]] - q.z)), abs=1e-7)
        assert sum(t["prob"] for t in top) == pytest.approx(1.0, abs=0.05)
        assert [t["logit"] for t in top] != [t["prob"] for t in top]
