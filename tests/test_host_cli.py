"""`microtrain compile` + `microtrain run --target host` end to end on a small model and the
digits dataset: losses per step, evaluation, and the exported model carries the trained
tensors the C program wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_tool

from microtrain.cli import main
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.ir import load_graph, save_graph

pytestmark = pytest.mark.host_c


def test_compile_then_run_exports_the_trained_model(tmp_path, capsys):
    require_tool("gcc", "gcc")
    graph = toy_mbnet(2, size=8, classes=10)
    save_graph(graph, tmp_path / "toy")
    proj = tmp_path / "proj"
    assert main(["compile", str(tmp_path / "toy.json"), "--scheme", "last-k:2", "--out", str(proj),
                 "--plot", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (proj / "memory.png").stat().st_size > 0
    assert main(["run", str(proj), "--data", "digits", "--steps", "6", "--lr", "0.05", "--eval", "12",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["losses"]) == 6 and all(np.isfinite(doc["losses"]))
    assert doc["eval_total"] == 12 and 0 <= doc["eval_correct"] <= 12
    trained = load_graph(doc["exported"])
    raw = (proj / "run" / "mt_weights.bin").read_bytes()
    pos, changed = 0, 0
    for t in report["trainable"]:
        arr = trained.tensors[t["name"]].data
        assert arr.tobytes() == raw[pos:pos + t["bytes"]]
        changed += int(np.sum(arr != graph.tensors[t["name"]].data))
        pos += t["bytes"]
    assert pos == len(raw) and changed > 0
    # a project that is not there is a clear error
    assert main(["run", str(tmp_path / "nope"), "--data", "digits", "--steps", "1"]) == 2
    assert "not a compiled project" in capsys.readouterr().err
