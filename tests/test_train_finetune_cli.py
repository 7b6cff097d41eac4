"""`microtrain finetune`: runs, writes the int8 model, resumes to identical bytes, clear errors."""

import json

import numpy as np
import pytest

from microtrain.cli import main
from microtrain.ir import load_graph, save_graph
from microtrain.sim.random_graph import random_graph
from microtrain.train.checkpoint import read_checkpoint

COMMON = ["--data", "digits", "--classes", "10", "--scheme", "last-k:2", "--optimizer", "sgdm-qas",
          "--lr", "0.05", "--batch-size", "16", "--limit", "96", "--test-limit", "40", "--threads", "1"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_graph(random_graph(0, resolution=8, channels=1, blocks=1, classes=10), path)
    return str(path) + ".json"


def _files(out):
    return (out / "model.json").read_bytes(), (out / "model.npz").read_bytes()


def test_finetune_writes_model_and_resumes_to_same_bytes(model, tmp_path, capsys):
    straight = tmp_path / "straight"
    assert main(["finetune", model, *COMMON, "--epochs", "2", "--out", str(straight), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["epochs"]) == 2 and 0.0 <= doc["test_accuracy"] <= 1.0
    trained = load_graph(straight / "model.json")
    original = load_graph(model)
    changed = [n for n, t in trained.tensors.items()
               if t.is_const and not np.array_equal(t.data, original.tensors[n].data)]
    assert changed and all(n.startswith(("blocks.0.pointwise2", "classifier")) for n in changed)
    assert json.loads((straight / "scheme.json").read_text())["format"] == "microtrain-scheme"

    # interrupted mid-epoch after 5 steps (last checkpoint at step 3), then resumed
    resumed = tmp_path / "resumed"
    args = ["finetune", model, *COMMON, "--epochs", "2", "--checkpoint-every", "3", "--out", str(resumed)]
    assert main([*args, "--stop-after", "5"]) == 0
    state = read_checkpoint(resumed / "checkpoint.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (0, 3)
    assert not (resumed / "model.json").exists()
    assert main([*args, "--resume"]) == 0
    assert _files(resumed) == _files(straight)

    # interrupted at an epoch boundary (6 steps per epoch), resumed by rerunning the same command
    again = tmp_path / "again"
    args = ["finetune", model, *COMMON, "--epochs", "2", "--out", str(again)]
    assert main([*args, "--stop-after", "7"]) == 0  # step 7 is lost, the end-of-epoch-1 checkpoint is kept
    state = read_checkpoint(again / "checkpoint.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 0)
    assert main(args) == 0
    assert _files(again) == _files(straight)
    # another run's checkpoint is refused
    assert main(["finetune", model, *COMMON, "--epochs", "3", "--out", str(again)]) == 2
    assert "belongs to another run" in capsys.readouterr().err


def test_finetune_errors(model, tmp_path, capsys):
    out = str(tmp_path / "o")
    base = ["finetune", model, "--data", "digits", "--limit", "20", "--test-limit", "10", "--epochs", "1", "--out", out]
    assert main([*base, "--classes", "5"]) == 2
    assert "has 10 classes but --classes is 5" in capsys.readouterr().err
    assert main([*base, "--classes", "10", "--scheme", "last-7"]) == 2
    assert "unknown scheme preset 'last-7'" in capsys.readouterr().err
    assert main([*base, "--classes", "10", "--resolution", "4"]) == 2
    assert "--resolution 4 does not fit" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((12, 8, 8, 2), np.uint8), labels=np.arange(12) % 3)
    assert main(["finetune", model, "--data", str(bad), "--epochs", "1", "--out", out]) == 2
    assert "channels" in capsys.readouterr().err
    assert main([*base, "--classes", "10", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_finetune_fp32_head_writes_int8_model(model, tmp_path, capsys):
    out = tmp_path / "fp32"
    assert main(["finetune", model, *COMMON, "--head", "fp32", "--epochs", "1", "--out", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    g = load_graph(out / "model.json")
    assert g.tensors["classifier.weight"].dtype == "int8" and g.tensors["classifier.out"].quant.z == 0
    assert json.loads((out / "scheme.json").read_text())["head"] == "fp32"
    # the written int8 model predicts like the simulated fp32 head on most test images
    from microtrain.data.datasets import load_dataset
    from microtrain.data.preprocess import preprocess
    from microtrain.interp.batched import infer_batch

    test = load_dataset("digits", "test", limit=40, seed=0)
    acc = float(np.mean(infer_batch(g, preprocess(test.images, g)).argmax(1) == test.labels))
    assert abs(acc - doc["test_accuracy"]) <= 0.1


def test_finetune_int8_errors_train_and_differ_from_fp32(model, tmp_path, capsys):
    runs = {}
    for dtype in ("fp32", "int8"):
        out = tmp_path / dtype
        assert main(["finetune", model, *COMMON, "--epochs", "1", "--grad-dtype", dtype, "--out", str(out),
                     "--json"]) == 0
        runs[dtype] = json.loads(capsys.readouterr().out)
        assert runs[dtype]["grad_dtype"] == dtype
    assert runs["int8"]["epochs"][0]["train_loss"] != runs["fp32"]["epochs"][0]["train_loss"]
    assert np.isfinite(runs["int8"]["epochs"][0]["train_loss"])
    base = ["finetune", model, *COMMON, "--epochs", "1", "--out", str(tmp_path / "x")]
    assert main([*base, "--optimizer", "fp32-sgd", "--grad-dtype", "int8"]) == 2
    assert "the float baseline fp32-sgd has none" in capsys.readouterr().err
