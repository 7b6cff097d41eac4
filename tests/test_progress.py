"""Issue 11: every phase that can take more than ~2 s reports its progress on stderr, from 0 to its
total, and stdout stays clean (one JSON document with --json). The phases are those of a real
run of each verb on a tiny model (8x8, one block), so the tests are fast; what is asserted is the
text a user sees on the terminal: a bar that starts at 0 before the work and reaches its total.
(``compile -v`` and the pass log: tests/test_compile_verbose.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from microtrain.cli import main
from microtrain.ir import save_graph
from microtrain.sim.random_graph import random_graph


@pytest.fixture(autouse=True)
def every_refresh_drawn(monkeypatch):
    """tqdm redraws at most every 0.1 s (and skips updates it deems too close); on a tiny model a
    whole phase is shorter than that, so every update is drawn here (mininterval 0, miniters 1) to
    see each bar reach its end. (tqdm's TQDM_* variables are read once, when tqdm is imported.)"""
    from functools import partialmethod

    from tqdm import std

    init = std.tqdm.__dict__["__init__"]
    monkeypatch.setattr(std.tqdm, "__init__", partialmethod(getattr(init, "func", init), mininterval=0, miniters=1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny"
    save_graph(random_graph(0, resolution=8, channels=1, blocks=1, classes=10), path)
    return path.with_suffix(".json")


def _json_run(capsys, argv: list[str]) -> tuple[dict, str]:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out), captured.err


def reported(err: str, desc: str) -> list[tuple[int, int]]:
    """(done, total) of every refresh of the bar called ``desc`` on the terminal (tqdm redraws
    in place with carriage returns)."""
    return [(int(a), int(b)) for a, b in re.findall(rf"{re.escape(desc)}:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)", err)]


def assert_bar(err: str, desc: str, total: int | None = None) -> int:
    """The bar ``desc`` was drawn at 0 before its work and at its total after it; returns the total."""
    seen = reported(err, desc)
    assert seen, f"no progress bar {desc!r} on stderr:\n{err[-2000:]}"
    totals = {t for _, t in seen}
    assert len(totals) == 1 and (total is None or totals == {total}), (desc, seen)
    (n,) = totals
    assert seen[0][0] == 0 and seen[-1][0] == n, (desc, seen)
    return n


def test_plan_shows_progress_for_the_prefix_the_learning_rate_the_analysis_and_both_searches(tiny, tmp_path,
                                                                                              capsys):
    doc, err = _json_run(capsys, ["plan", str(tiny), "--data", "digits", "--classes", "10", "--budget", "64KB",
                                  "--limit", "40", "--val-limit", "20", "--epochs", "1", "--candidates", "2",
                                  "--evaluations", "12", "--population", "4", "--workers", "1",
                                  "--out", str(tmp_path / "s.json")])
    assert "choosing the analysis learning rate" in err
    assert assert_bar(err, "frozen-prefix activations") == 2 * (40 + 20)  # train + held-out images, twice
    assert assert_bar(err, "learning-rate runs") >= 4  # at least one run per candidate rate
    assert assert_bar(err, "analysis runs") > 0
    assert_bar(err, "evolutionary search", 12)
    assert_bar(err, "random search", 12)
    assert doc["budget_bytes"] == 64 * 1024  # stdout is the one JSON document, the bars went to stderr


def test_finetune_shows_progress_while_caching_the_frozen_prefix_and_training(tiny, tmp_path, capsys):
    doc, err = _json_run(capsys, ["finetune", str(tiny), "--data", "digits", "--classes", "10", "--limit", "48",
                                  "--test-limit", "20", "--epochs", "2", "--batch-size", "16", "--lr", "0.01",
                                  "--out", str(tmp_path / "ft")])
    assert "caching the frozen prefix" in err
    assert_bar(err, "frozen prefix", 48 + 20)
    assert_bar(err, "finetune", 2 * 3)  # 48 images at batch 16, two epochs
    assert len(doc["epochs"]) == 2


def test_eval_shows_progress_per_image(tiny, capsys):
    doc, err = _json_run(capsys, ["eval", str(tiny), "--data", "digits", "--limit", "30"])
    assert_bar(err, "int8 eval", 30)
    assert doc["samples"] == 30


@pytest.mark.host_c
def test_run_shows_one_progress_step_per_device_step(tiny, tmp_path, capsys):
    from conftest import require_tool

    require_tool("gcc", "gcc")
    proj = tmp_path / "proj"
    _json_run(capsys, ["compile", str(tiny), "--classes", "10", "--scheme", "last-k:2", "--out", str(proj)])
    doc, err = _json_run(capsys, ["run", str(proj), "--data", "digits", "--steps", "7", "--lr", "0.001"])
    assert "building and running on host" in err
    assert_bar(err, "training on host", 7)  # ticks on the driver's step lines, as they are printed
    assert doc["steps"] == 7
