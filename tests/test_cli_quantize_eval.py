"""``microtrain quantize`` and ``microtrain eval``: files written, JSON documents, errors."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from microtrain.cli import main
from microtrain.ir import load_graph
from microtrain.zoo.default_cnn import build_default_cnn, save_state_npz


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_default_cnn(num_classes=10).eval()
    d = tmp_path_factory.mktemp("ckpt")
    save_state_npz(model, d / "float.npz")
    torch.save(model.state_dict(), d / "float.pt")
    return d


@pytest.fixture(scope="module")
def quantized(checkpoint):
    out = checkpoint / "q" / "model"
    assert main(["quantize", str(checkpoint / "float.npz"), "--arch", "default", "--calib-data", "digits",
                 "--calib-samples", "40", "--out", str(out)]) == 0
    return out


def _json(capsys, argv):
    code = main(argv + ["--json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else None), captured.err


def test_quantize_npz_and_pt_give_the_same_model(checkpoint, quantized, capsys):
    code, doc, _ = _json(capsys, ["quantize", str(checkpoint / "float.pt"), "--arch", "default", "--calib-data",
                                  "digits", "--calib-samples", "40", "--out", str(checkpoint / "from_pt.json")])
    assert code == 0 and doc["layers"] == 17 and doc["num_classes"] == 10 and doc["arch"] == "default"
    assert doc["calibration"] == {"method": "minmax", "samples": 40}
    a, b = load_graph(quantized), load_graph(doc["model"])
    assert a.meta["preprocess"] == {"resolution": [28, 28], "channels": 1, "range": [0.0, 1.0]}
    assert [n.name for n in a.nodes] == [n.name for n in b.nodes]
    assert all(np.array_equal(a.tensors[k].data, b.tensors[k].data) for k in a.tensors if a.tensors[k].is_const)
    assert a.tensors["input"].quant.scale == (1 / 255,) and a.tensors["input"].quant.zero_point == (-128,)


@pytest.mark.parametrize("args, message", [
    (["--arch", "mbv2-w0.35"], "does not fit --arch mbv2-w0.35"),
    (["--calib-data", "nowhere"], "unknown dataset 'nowhere'"),
    (["--calib-samples", "0"], "--calib-samples must be >= 1"),
])
def test_quantize_user_errors(checkpoint, capsys, args, message):
    argv = ["quantize", str(checkpoint / "float.npz"), "--arch", "default", "--calib-data", "digits",
            "--out", str(checkpoint / "x")]
    if args[0] in argv:
        argv[argv.index(args[0]) + 1] = args[1]
    else:
        argv += args
    code, _, err = _json(capsys, argv)
    assert code == 2 and message in err


class _Boom:
    def __reduce__(self):
        return (print, ("this pickle ran code",))


def test_quantize_refuses_a_hostile_pt_without_running_it(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    with open(bad, "wb") as f:
        pickle.dump({"classifier.weight": _Boom()}, f, protocol=2)
    code, _, err = _json(capsys, ["quantize", str(bad), "--arch", "default", "--calib-data", "digits",
                                  "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert code == 2 and "weights_only=True" in err and "this pickle ran code" not in captured.out + err


def test_eval_reports_accuracy_and_per_class_rows(quantized, capsys):
    code, doc, err = _json(capsys, ["eval", str(quantized) + ".json", "--data", "digits", "--limit", "30"])
    assert code == 0 and doc["samples"] == 30 and doc["split"] == "test" and doc["engine"] == "reference"
    rows = doc["per_class"]
    assert [r["class"] for r in rows] == list(range(10)) and sum(r["count"] for r in rows) == 30
    assert doc["correct"] == sum(r["correct"] for r in rows)
    assert doc["accuracy"] == pytest.approx(doc["correct"] / 30)
    assert "resize 8x8 -> 28x28" in err
    code, batched, _ = _json(capsys, ["eval", str(quantized) + ".json", "--data", "digits", "--limit", "30",
                                      "--engine", "batched"])
    assert batched["per_class"] == rows


def test_eval_human_table(quantized, capsys):
    assert main(["eval", str(quantized) + ".json", "--data", "digits", "--limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and out.count("\n") >= 11


def test_eval_errors(quantized, tmp_path, capsys):
    np.savez(tmp_path / "many.npz", images=np.zeros((24, 8, 8), np.uint8), labels=np.arange(24) % 12)
    code, _, err = _json(capsys, ["eval", str(quantized) + ".json", "--data", str(tmp_path / "many.npz"),
                                  "--split", "all"])
    assert code == 2 and "12 classes but the model outputs 10" in err
    code, _, err = _json(capsys, ["eval", str(tmp_path / "none.json"), "--data", "digits"])
    assert code == 2 and "none" in err
