"""``compile -v`` shows the compiler's pass log (one line per pass, with its effect on the peak);
the default shows none of it. Either way the pass lines land in report.json, and the planner's
saving is measured from the step's one plan."""

from __future__ import annotations

import json

from microtrain.cli import main
from microtrain.compiler.pipeline import compile_training
from microtrain.compiler.plan_memory import plan_memory
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.scheme import make_scheme

ARGS = ["compile", "default", "--classes", "10", "--scheme", "last-k:2"]


def test_default_prints_no_pass_log(tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "differentiate:" not in err and "plan_memory" not in err
    passes = json.loads((tmp_path / "p" / "report.json").read_text())["passes"]
    assert passes[1].startswith("differentiate: nodes") and passes[-1].startswith("plan_memory")


def test_verbose_prints_every_pass_with_its_peak(tmp_path, capsys):
    assert main([*ARGS, "--out", str(tmp_path / "p"), "-v"]) == 0
    lines = capsys.readouterr().err.splitlines()
    for name in ("build_training_graph", "differentiate", "insert_updates", "prune_frozen", "reorder_updates"):
        assert any(line.startswith(f"{name}:") for line in lines), name
    assert any(line.startswith("prune_frozen: peak ") and " KB -> " in line for line in lines)
    assert any(line.startswith("plan_memory (greedy_by_size): arena ") for line in lines)


def test_no_reuse_baseline_is_the_no_reuse_plan():
    graph = toy_mbnet(0, size=12, classes=4, blocks=((2, 8, 2), (3, 8, 1)))
    names = [n.name for n in graph.weighted_nodes()]
    step = compile_training(graph, make_scheme(graph, names[1:], {"blocks.1.pointwise1": 1.0}))
    assert step.plan.no_reuse_bytes == plan_memory(step.graph, "no_reuse").arena_bytes > step.plan.arena_bytes
