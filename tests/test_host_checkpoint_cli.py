"""`microtrain run --checkpoint-every`: the trained state survives the end of a run. A second run
with the same work directory restores the newest checkpoint and continues from its sample count;
stopping after 8 samples and running again to 12 ends with exactly the weights and losses of one
run of 12 samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_tool

from microtrain.cli import main
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.ir import save_graph

pytestmark = pytest.mark.host_c


def test_run_resumes_from_its_checkpoint(tmp_path, capsys):
    require_tool("gcc", "gcc")
    save_graph(toy_mbnet(2, size=8, classes=10), tmp_path / "toy")
    proj = tmp_path / "proj"
    assert main(["compile", str(tmp_path / "toy.json"), "--scheme", "last-k:2", "--out", str(proj),
                 "--accumulate", "2", "--json"]) == 0
    capsys.readouterr()
    common = ["--data", "digits", "--lr", "0.05", "--schedule", "constant", "--checkpoint-every", "4",
              "--flash-page-size", "512", "--json"]

    def run(steps: int, work: str) -> dict:
        assert main(["run", str(proj), "--steps", str(steps), "--workdir", str(tmp_path / work), *common]) == 0
        return json.loads(capsys.readouterr().out)

    whole = run(12, "whole")
    assert whole["checkpoints"]["none"] and len(whole["checkpoints"]["saves"]) == 3
    first = run(8, "resumed")
    second = run(12, "resumed")  # "reboot": the same flash file
    assert second["checkpoints"]["restored"] == {"seq": 2, "slot": 1, "samples": 8}
    assert first["loss_bits"] + second["loss_bits"] == whole["loss_bits"]
    weights = {w: (tmp_path / w / "mt_weights.bin").read_bytes() for w in ("resumed", "whole")}
    assert weights["resumed"] == weights["whole"]
    assert second["checkpoints"]["saves"][-1]["seq"] == 3
    # a geometry the flash cannot have is a clear error
    assert main(["run", str(proj), "--steps", "4", "--workdir", str(tmp_path / "bad"), "--data", "digits",
                 "--checkpoint-every", "2", "--flash-write-unit", "6"]) == 2
    assert "write unit must be a power of two" in capsys.readouterr().err


def test_prequential_accuracy_of_a_stream(tmp_path, capsys):
    """`run --prequential`: the prediction for each training sample is taken from the training
    step's own forward pass, before its update: it equals what mt_infer says of the sample with
    the weights of the step before (checked against the reference interpreter on the exported
    weights of a run one step shorter)."""
    require_tool("gcc", "gcc")
    from microtrain.interp.reference import infer
    from microtrain.ir import load_graph
    save_graph(toy_mbnet(3, size=8, classes=10), tmp_path / "toy")
    proj = tmp_path / "proj"
    assert main(["compile", str(tmp_path / "toy.json"), "--scheme", "last-k:2", "--out", str(proj)]) == 0
    capsys.readouterr()
    common = ["--data", "digits", "--lr", "0.05", "--schedule", "constant", "--prequential", "--json"]
    assert main(["run", str(proj), "--steps", "30", "--workdir", str(tmp_path / "w30"), *common]) == 0
    doc = json.loads(capsys.readouterr().out)
    pq = doc["prequential"]
    assert pq["steps"] == list(range(30)) and len(pq["correct"]) == 30
    assert pq["running"][-1] == pq["accuracy"] == sum(pq["correct"]) / 30
    # sample 29's prediction = inference with the weights after 29 steps
    assert main(["run", str(proj), "--steps", "29", "--workdir", str(tmp_path / "w29"),
                 "--export", str(tmp_path / "after29"), *common]) == 0
    capsys.readouterr()
    graph = load_graph(tmp_path / "after29")
    x = np.fromfile(tmp_path / "w30" / "mt_train_x.bin", dtype=np.int8).reshape((-1,) + graph.tensors[
        graph.inputs[0]].shape[1:])
    y = np.fromfile(tmp_path / "w30" / "mt_train_y.bin", dtype="<i4")
    logits = infer(graph, x[29][None])[0]
    assert pq["predicted"][29] == int(np.argmax(logits))
    assert pq["correct"][29] == int(pq["predicted"][29] == int(y[29]))
    assert len(set(pq["predicted"])) > 1  # the predictions follow the learning, not a constant
