"""Clear errors: a scheme the model cannot support, an op without a gradient rule, a budget
that cannot be met, and the same through the CLI (exit code 2, one-line message)."""

from __future__ import annotations

import json

import pytest

import microtrain.compiler  # noqa: F401
from microtrain.cli import main
from microtrain.compiler import differentiate as diff
from microtrain.compiler.build_training_graph import CompileError
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.ir import save_graph
from microtrain.ir.ops import Op
from microtrain.scheme import UpdateScheme, WeightUpdate, make_scheme


@pytest.fixture(scope="module")
def graph():
    return toy_mbnet(0)


def test_scheme_naming_a_missing_layer(graph):
    scheme = UpdateScheme(bias_layers=("blocks.7.pointwise1",))
    with pytest.raises(CompileError, match="blocks.7.pointwise1.*not a conv/linear layer"):
        compile_training(graph, scheme)
    bad_channels = UpdateScheme(weight_layers=(WeightUpdate("classifier", 0.5, (0, 9)),))
    with pytest.raises(CompileError, match="classifier"):
        compile_training(graph, bad_channels)


def test_op_without_gradient_rule(graph, monkeypatch):
    monkeypatch.delitem(diff.VJP_RULES, Op.ADD)
    scheme = make_scheme(graph, ["blocks.0.pointwise1"])
    with pytest.raises(CompileError, match=r"add \(node 'blocks.1.residual'\) has no gradient rule"):
        compile_training(graph, scheme)
    # a scheme that does not need the gradient through the ADD still compiles
    compile_training(graph, make_scheme(graph, ["classifier"]))


def test_budget_that_cannot_be_met(graph):
    scheme = make_scheme(graph, ["classifier"], {"classifier": 1.0})
    peak = compile_training(graph, scheme).plan.peak_bytes
    compile_training(graph, scheme, CompileOptions(budget=peak))  # exactly enough is enough
    with pytest.raises(CompileError, match=r"peak memory .* exceeds the budget"):
        compile_training(graph, scheme, CompileOptions(budget=peak - 1))


def test_unsupported_head_and_empty_scheme(graph):
    with pytest.raises(CompileError, match="head 'fp32' is not supported"):
        compile_training(graph, UpdateScheme(bias_layers=("classifier",), head="fp32"))
    with pytest.raises(CompileError, match="updates nothing"):
        compile_training(graph, UpdateScheme())


def test_cli_errors_and_json(graph, tmp_path, capsys):
    save_graph(graph, tmp_path / "toy")
    model_json = str(tmp_path / "toy.json")
    scheme_path = tmp_path / "s.json"
    UpdateScheme(bias_layers=("nope",)).save(scheme_path)
    assert main(["compile", model_json, "--scheme", str(scheme_path), "--out", str(tmp_path / "p")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["compile", model_json, "--scheme", "classifier-only", "--budget", "1KB",
                 "--out", str(tmp_path / "p")]) == 2
    assert "exceeds the budget" in capsys.readouterr().err
    assert main(["compile", model_json, "--scheme", "classifier-only", "--out", str(tmp_path / "p"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["peak_bytes"] == doc["arena_bytes"] + doc["trainable_bytes"]
    assert set(doc["breakdown"]) >= {"trainable"}
    assert [t["name"] for t in doc["trainable"]] == ["classifier.weight", "classifier.bias"]
    assert (tmp_path / "p" / "include" / "mt_model.h").exists()
