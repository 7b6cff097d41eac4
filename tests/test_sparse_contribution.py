"""Contribution analysis: cached jobs resume after an interruption, serial == process pool ==
Ray numbers, content-keyed jobs, and the `microtrain plan` verb end to end on a tiny graph."""

from __future__ import annotations

import dataclasses
import json

import pytest

from microtrain.cli import main
from microtrain.compiler.pipeline import compile_training
from microtrain.ir.serialize import save_graph
from microtrain.scheme import UpdateScheme
from microtrain.sim.random_graph import random_graph
from microtrain.sparse.contribution import (
    LR_CANDIDATES,
    AnalysisConfig,
    Job,
    choose_lr,
    load_results,
    prepare,
    run_analysis,
)

CFG = AnalysisConfig(epochs=1, candidates=2, bias_ks=(0, 1, 2, 4), ratios=(0.5, 1.0), lr=0.02)


def tiny_graph():
    return random_graph(0, resolution=8, channels=1, classes=10, blocks=2)


@pytest.fixture(scope="module")
def data():
    return prepare(tiny_graph(), "digits", limit=40, test_limit=30, config=CFG)


@pytest.fixture(scope="module")
def serial(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    table, stats = run_analysis(data, out, backend="serial")
    return out, table, stats


def test_jobs_and_table(data, serial):
    _, table, stats = serial
    labels = [j.label for j in data.jobs()]
    assert labels[:4] == ["classifier", "bias:1", "bias:2", "bias:4"] and len(labels) == 8
    assert data.base_k() == 2 and data.deepest_k() == 4  # weight jobs sit on the smallest covering range
    assert stats["cached"] == 0 and stats["computed"] == labels
    results = load_results(data, serial[0])
    acc = {k: r["accuracy"] for k, r in results.items()}
    assert table.classifier_accuracy == acc["classifier"]
    assert table.bias_gain == {k: acc[f"bias:{k}"] - acc["classifier"] for k in (1, 2, 4)} | {0: 0.0}
    layer = data.candidates()[0]
    assert table.weight_gain[(layer, 0.5)] == acc[f"weight:{layer}@0.5"] - acc["bias:2"]
    # the weight job trains the base biases, the classifier and the layer's kept channels
    scheme = data.scheme(Job("weight", 2, layer, 0.5))
    assert set(scheme.bias_layers) == set(data.convs()[-2:]) | {data.classifier()}
    assert {w.layer for w in scheme.weight_layers} == {layer, data.classifier()}


def test_interrupted_analysis_resumes_without_redoing(data, serial, tmp_path):
    _, table, _ = serial
    seen = []

    def interrupt(done, total):
        seen.append(done)
        if done == 3:
            raise KeyboardInterrupt  # as a user's Ctrl-C after the third finished run

    with pytest.raises(KeyboardInterrupt):
        run_analysis(data, tmp_path, backend="serial", progress=interrupt)
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 3
    assert not list((tmp_path / "jobs").glob(".*tmp"))  # written atomically: no partial files
    again, stats = run_analysis(data, tmp_path, backend="serial")
    assert stats["cached"] == 3 and len(stats["computed"]) == 5
    assert again == table
    # delete two finished results: exactly those two run again, the rest is reused
    gone = sorted((tmp_path / "jobs").glob("*.json"))[:2]
    labels = {json.loads(p.read_text())["label"] for p in gone}
    for p in gone:
        p.unlink()
    third, stats = run_analysis(data, tmp_path, backend="serial")
    assert set(stats["computed"]) == labels and third == table


def test_process_pool_gives_the_serial_numbers(data, serial, tmp_path):
    out, table, _ = serial
    pooled, stats = run_analysis(data, tmp_path, backend="local", workers=2)
    assert pooled == table
    a, b = load_results(data, out), load_results(data, tmp_path)
    assert {k: r["history"] for k, r in a.items()} == {k: r["history"] for k, r in b.items()}
    assert len({r["pid"] for r in b.values()}) >= 1 and all(r["pid"] != a[k]["pid"] for k, r in b.items())


@pytest.mark.ray
@pytest.mark.slow
def test_ray_gives_the_local_numbers(data, serial, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'microtrain[ray]'); the ray backend "
                                      "is optional")
    import ray

    _, table, _ = serial
    try:
        on_ray, _ = run_analysis(data, tmp_path, backend="ray", workers=2)
    finally:
        ray.shutdown()
    assert on_ray == table


def test_job_keys_follow_content(data):
    job = data.jobs()[1]
    key = data.job_key(job)
    assert data.job_key(job) == key
    assert dataclasses.replace(data, config=dataclasses.replace(CFG, lr=0.03)).job_key(job) != key
    other = prepare(tiny_graph(), "digits", limit=40, test_limit=30, config=CFG, data_seed=1)
    assert other.job_key(job) != key
    assert data.job_key(data.jobs()[2]) != key


def test_plan_cli_end_to_end(tmp_path, capsys):
    model = tmp_path / "tiny.json"
    save_graph(tiny_graph(), model)
    common = [str(model), "--data", "digits", "--limit", "40", "--test-limit", "30", "--epochs", "1",
              "--candidates", "2", "--evaluations", "20", "--population", "6", "--workers", "1",
              "--analysis", str(tmp_path / "an"), "--out", str(tmp_path / "s.json")]
    assert main(["plan", *common, "--budget", "100", "--json"]) == 2
    err = capsys.readouterr().err
    assert "smallest feasible budget is" in err and "classifier-only" in err
    smallest = float(err.split("smallest feasible budget is ")[1].split(" KB")[0])
    assert not (tmp_path / "an").exists()  # issue 11: answered before any analysis run

    budget = int(smallest * 1024) + 600
    assert main(["plan", *common, "--budget", str(budget), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main(["plan", *common, "--budget", str(budget), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert first["analysis_stats"]["cached"] < first["analysis_stats"]["jobs"]
    assert doc["analysis_stats"]["cached"] == doc["analysis_stats"]["jobs"]  # the analysis was reused
    assert doc["scheme"] == first["scheme"] if "scheme" in doc else doc["peak_bytes"] == first["peak_bytes"]
    assert doc["analysis_lr"] in LR_CANDIDATES  # --lr auto (the default) chose one on the held-out images
    graph = tiny_graph()
    scheme = UpdateScheme.load(tmp_path / "s.json")
    step = compile_training(graph, scheme)
    assert step.plan.peak_bytes == doc["peak_bytes"] <= budget
    assert doc["breakdown"]["trainable"] == step.plan.trainable_bytes
    assert (tmp_path / "s.frontier.png").stat().st_size > 1000
    assert doc["search"]["evolutionary"]["evaluations"] <= 20
    assert doc["predicted_accuracy"] >= doc["classifier_accuracy"]
    assert {r["layer"] for r in doc["layers"]} == scheme.updated_layers()
    # the budget is the number `microtrain compile` reports for the same model and scheme
    assert main(["compile", str(model), "--scheme", str(tmp_path / "s.json"), "--out", str(tmp_path / "c"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["peak_bytes"] == doc["peak_bytes"]


def test_sliced_prefix_cache_gives_the_plain_run(data):
    """A job fed from the shared activations (one forward to the deepest cut, sliced) trains
    exactly as the same scheme fed from its own prefix."""
    import torch

    from microtrain.sparse.contribution import JobRunner
    from microtrain.train.loop import TrainConfig, Trainer

    job = [j for j in data.jobs() if j.kind == "weight"][0]
    shared = JobRunner(data, None).run(job)
    cfg = TrainConfig(optimizer=CFG.optimizer, lr=CFG.lr, epochs=CFG.epochs, batch_size=CFG.batch_size,
                      rounding=CFG.rounding, seed=CFG.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t = Trainer(data.graph, data.scheme(job), cfg)
        plain = t.fit(t.cache(data.x_train), data.y_train, t.cache(data.x_test), data.y_test)
    finally:
        torch.set_num_threads(threads)
    assert shared["history"] == plain


def test_runs_are_scored_on_training_images_held_out_not_on_the_test_split():
    """Choosing a scheme is model selection: the analysis never sees the test split."""
    import numpy as np

    from microtrain.data.datasets import load_dataset
    from microtrain.data.preprocess import preprocess

    d = prepare(tiny_graph(), "digits", limit=40, test_limit=30, config=CFG)
    train = preprocess(load_dataset("digits", "train").images, d.graph).reshape(-1, d.x_train[0].size)
    rows = {r.tobytes() for r in train}
    held_out = [r.tobytes() for r in d.x_test.reshape(len(d.x_test), -1)]
    trained = {r.tobytes() for r in d.x_train.reshape(len(d.x_train), -1)}
    assert len(held_out) == 30 and all(r in rows for r in held_out)  # from the training split
    assert not trained & set(held_out)  # disjoint from the images each run trains on
    assert np.bincount(d.y_test, minlength=10).min() == 3  # class-balanced
    with pytest.raises(ValueError, match="lower --limit / --val-limit"):
        prepare(tiny_graph(), "digits", limit=1400, test_limit=100, config=CFG)


def test_default_subsets_use_a_small_training_split_whole():
    """Named limits are kept (and refused when they do not fit); with none named, 500 + 300 or,
    under 800 training images, all of them split 5:3, so `plan` works on a small folder of one's own."""
    from microtrain.sparse.contribution import default_limits

    assert default_limits(1437) == (500, 300) and default_limits(800) == (500, 300)
    assert default_limits(287) == (180, 107) and default_limits(2) == (1, 1)
    small = prepare(tiny_graph(), "digits", limit=None, test_limit=None, classes=2, config=CFG)
    n = small.description["train_samples"] + small.description["held_out_samples"]
    assert small.description["held_out_samples"] == n * 3 // 8 and 250 < n < 800  # every image of classes 0-1
    assert small.description["classes"] == 2
    with pytest.raises(ValueError, match="lower --limit / --val-limit"):
        prepare(tiny_graph(), "digits", limit=500, test_limit=300, classes=2, config=CFG)
    big = prepare(tiny_graph(), "digits", limit=None, test_limit=None, config=CFG)
    assert (big.description["train_samples"], big.description["held_out_samples"]) == (500, 300)


def test_choose_lr_takes_the_best_held_out_score_and_caches_it(data, tmp_path, monkeypatch, capsys):
    import microtrain.sparse.contribution as contribution

    lrs = (0.002, 0.02, 0.2)
    best, scores = choose_lr(data, tmp_path, lrs, backend="serial")
    assert set(scores) == set(lrs) and best in lrs
    assert scores[best] == max(scores.values())
    assert all(scores[best] > scores[lr] or lr >= best for lr in lrs)  # ties go to the smaller rate
    # the base run at the chosen rate is the same job the analysis then builds on
    chosen = dataclasses.replace(data, config=dataclasses.replace(data.config, lr=best))
    assert load_results(chosen, tmp_path)[f"bias:{data.base_k()}"]["accuracy"] == scores[best]

    def no_runs(*a, **k):
        raise AssertionError("a cached rate was run again")

    monkeypatch.setattr(contribution, "map_jobs", no_runs)
    assert choose_lr(data, tmp_path, lrs, backend="serial") == (best, scores)
    model = tmp_path / "tiny.json"
    save_graph(tiny_graph(), model)
    assert main(["plan", str(model), "--data", "digits", "--budget", "1MB", "--lr", "fast"]) == 2
    assert "--lr 'fast': give a number" in capsys.readouterr().err


def test_a_diverging_rate_is_never_chosen_and_a_diverged_classifier_run_is_an_error(tmp_path):
    """Issue 11: plan's summary once said "classifier-only 10.0 %" because the auto-picked rate
    diverged for the classifier. A rate whose base or classifier-only run diverges is not eligible,
    and an analysis whose classifier-only run diverges stops with the step instead of a table."""
    from microtrain.sparse.contribution import diverged_rates

    # 40 images at batch 4 for 4 epochs: 40 steps, enough for the watch's 30-step mean window
    data = prepare(tiny_graph(), "digits", limit=40, test_limit=30,
                   config=dataclasses.replace(CFG, epochs=4, batch_size=4))
    lrs = (0.002, 0.02, 1e5)
    best, scores = choose_lr(data, tmp_path, lrs, backend="serial")
    diverged = diverged_rates(data, tmp_path, lrs)
    assert 1e5 in diverged and best != 1e5 and set(diverged) <= {1e5}
    huge = dataclasses.replace(data, config=dataclasses.replace(data.config, lr=1e5))
    with pytest.raises(RuntimeError, match=r"classifier-only analysis run diverged at step \d+"):
        run_analysis(huge, tmp_path, backend="serial")
