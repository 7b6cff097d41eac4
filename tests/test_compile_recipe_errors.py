"""A training recipe the device cannot hold is a clear compile error (CLI exit code 2, one line
naming the option and the fix): an unknown schedule, an accumulation count out of range,
momentum outside [0, 1), a warm-up that is not a fraction, and optimizer state that does not fit
the memory budget. The report shows the accumulation and momentum buffers."""

from __future__ import annotations

import json

import pytest

from microtrain.cli import main
from microtrain.compiler.build_training_graph import CompileError
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.ir import save_graph
from microtrain.scheme import make_scheme


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    graph = toy_mbnet(0)
    path = tmp_path_factory.mktemp("toy") / "toy"
    save_graph(graph, path)
    return graph, str(path.with_suffix(".json"))


@pytest.mark.parametrize("options,match", [
    ({"lr_schedule": "step"}, "schedule 'step' cannot run on the device"),
    ({"accumulate": 0}, "accumulate 0"),
    ({"accumulate": 70000}, "accumulate 70000"),
    ({"momentum": 1.0}, "momentum 1.0 must be in"),
    ({"warmup": 1.5}, "warm-up 1.5"),
    ({"lr": float("nan")}, "learning rate nan"),
])
def test_recipe_the_device_cannot_hold(toy, options, match):
    graph, _ = toy
    with pytest.raises(CompileError, match=match):
        compile_training(graph, make_scheme(graph, ["classifier"]), CompileOptions(**options))


def test_cli_errors_and_the_state_in_the_report(toy, tmp_path, capsys):
    graph, path = toy
    base = ["compile", path, "--scheme", "last-k:3", "--out", str(tmp_path / "p")]
    assert main(base + ["--accumulate", "0"]) == 2
    err = capsys.readouterr().err
    assert "accumulate 0" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(base + ["--momentum", "-0.5"]) == 2
    assert "momentum -0.5" in capsys.readouterr().err
    # the buffers are in the plan and the report: K > 1 and momentum each add 4 bytes per trained element
    assert main(base + ["--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(base + ["--accumulate", "4", "--momentum", "0.9", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    elements = sum(t["bytes"] // {"int8": 1, "int32": 4}[t["dtype"]] for t in doc["trainable"])
    assert doc["optimizer_state_bytes"] == 2 * 4 * elements == sum(doc["optimizer_state"].values())
    assert doc["peak_bytes"] == plain["peak_bytes"] + doc["optimizer_state_bytes"]
    assert doc["breakdown"]["optimizer_state"] == doc["optimizer_state_bytes"]
    # a budget the weights fit but the optimizer state does not: the message names the state
    budget = plain["peak_bytes"] + doc["optimizer_state_bytes"] // 2
    assert main(base + ["--accumulate", "4", "--momentum", "0.9", "--budget", str(budget)]) == 2
    err = capsys.readouterr().err
    assert "exceeds the budget" in err and "optimizer state" in err and "--accumulate 1" in err
