"""The divergence watch (issue 11): its rule on hand-made loss sequences, the C twin in the
generated driver stopping at exactly the step the Python rule names, and every training path
(simulator, host) ending a diverged run with a one-line error naming the step, keeping the last
good weights."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
from conftest import require_tool

from microtrain.codegen.main_template import WATCH_C
from microtrain.train.divergence import FACTOR, WINDOW, LossWatch, TrainingDiverged, watch_losses

LN10 = float(np.float32(math.log(10)))


def _stop(losses, classes=10, labels=None):
    """(step, reason) where the Python watch stops ``losses``, or None."""
    try:
        watch_losses(losses, classes, labels)
    except TrainingDiverged as e:
        return e.step, e.reason
    return None


def test_nan_and_infinity_stop_at_their_step():
    assert _stop([2.0, 1.5, float("nan"), 1.0]) == (2, "non-finite")
    assert _stop([2.0, float("inf")]) == (1, "non-finite")


def test_collapse_to_ln_c_after_moving():
    seq = [2.1, 1.9, 17.8] + [LN10] * WINDOW
    assert _stop(seq) == (2 + WINDOW, "collapsed")
    # a head that starts exactly uniform and has not moved yet is not a collapse
    assert _stop([LN10] * (3 * WINDOW)) is None
    # ln C repeated fewer than WINDOW times in a row is not one either
    assert _stop([2.0, *([LN10] * (WINDOW - 1)), 1.0, *([LN10] * (WINDOW - 1))]) is None


def test_blown_up_needs_most_of_a_window_far_above_the_start():
    high = FACTOR * LN10 * 1.01
    assert _stop([2.0] + [high] * (WINDOW // 2 + 1)) == (WINDOW // 2 + 1, "blown-up")
    # half the window high (single spikes at batch 1) is not enough
    assert _stop([2.0] + [high, 0.5] * (3 * WINDOW)) is None
    # the start level is max(ln C, first loss): a high first loss raises the bar
    assert _stop([30.0] + [high] * (3 * WINDOW)) is None


def test_healthy_noisy_runs_never_stop():
    rng = np.random.default_rng(0)
    for _ in range(200):  # batch-1 losses: mostly small, a few confident mistakes
        losses = np.where(rng.random(400) < 0.15, rng.uniform(3, 9, 400), rng.exponential(0.8, 400))
        losses[:20] = rng.uniform(1.5, 3.0, 20)  # a new head starts near ln C
        assert _stop(losses.astype(np.float32).tolist()) is None


def test_stuck_constant_output_stops_but_a_confident_model_does_not():
    from microtrain.train.divergence import STUCK_WINDOW

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, 400)
    per_label = np.float32([3.12] * 10)
    per_label[4] = 0.51  # the model answers 4 whatever the image (a run at a huge lr on the device)
    varied = rng.exponential(1.0, 50).astype(np.float32)
    losses = np.concatenate([varied, per_label[labels[50:]]])
    step, reason = _stop(losses.tolist(), labels=labels)
    assert reason == "stuck" and 50 < step <= 50 + STUCK_WINDOW - 1  # within one window of the change
    # a constant output from the very start (a head that never depended on the input yet) is not a divergence
    assert _stop(per_label[labels].tolist(), labels=labels) is None
    # saturated int8 logits of an accurate model: two loss values too, but not a function of the label
    a, b = np.float32(6.7e-5), np.float32(17.78)
    wrong = rng.random(400) < 0.1
    assert _stop(np.concatenate([varied, np.where(wrong[50:], b, a)]).tolist(), labels=labels) is None
    # all right (a confident model): a function of the label, but far below chance level
    assert _stop(np.concatenate([varied, np.full(350, a)]).tolist(), labels=labels) is None


def test_watch_state_round_trips():
    w = LossWatch(10)
    for i, loss in enumerate([2.0, 9.5, 9.6, 1.0, *np.linspace(0.5, 2.0, 40)]):
        w.update(i, float(loss), i % 7)
    again = LossWatch.from_state(json.loads(json.dumps(w.state_dict())))
    assert again == w


HARNESS = r"""
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define MT_NUM_CLASSES 10
""" + WATCH_C + r"""
/* Per sequence (lines of "<float bits> <label>", "r" starts the next): one line "stop <step> <why>" or
 * "none", then ":" and mt_watch_healthy() after each step that did not stop (0/1). */
static char healthy[4096];
static long n_healthy;

static void finish(int stopped, long step, int why)
{
    if (stopped) printf("stop %ld %d", step, why);
    else printf("none");
    healthy[n_healthy] = 0;
    printf(" :%s\n", healthy);
}

int main(void)
{
    char line[64];
    long step = 0, stop_step = 0;
    int stopped = 0, stop_why = 0, started = 0;
    while (fgets(line, sizeof line, stdin) != NULL) {
        if (line[0] == 'r') { /* a new sequence */
            if (started) finish(stopped, stop_step, stop_why);
            memset(&mt_watch, 0, sizeof mt_watch);
            step = n_healthy = 0;
            stopped = stop_why = 0;
            started = 1;
            continue;
        }
        if (!stopped) {
            char *rest;
            uint32_t b = (uint32_t)strtoul(line, &rest, 16);
            int32_t label = (int32_t)strtol(rest, NULL, 10);
            float x;
            int why;
            memcpy(&x, &b, sizeof x);
            why = mt_watch_loss(x, label);
            if (why != 0) {
                stopped = 1;
                stop_step = step;
                stop_why = why;
            } else {
                healthy[n_healthy++] = (char)('0' + mt_watch_healthy());
            }
        }
        step++;
    }
    if (started) finish(stopped, stop_step, stop_why);
    return 0;
}
"""


def _python_run(losses, labels, classes=10):
    """(stop or None, the healthy() string after each step that did not stop) of the Python watch."""
    watch, flags = LossWatch(classes), []
    for step, loss in enumerate(losses):
        try:
            watch.update(step, loss, int(labels[step]))
        except TrainingDiverged as e:
            return (e.step, e.reason), "".join(flags)
        flags.append("1" if watch.healthy() else "0")
    return None, "".join(flags)


def _sequences() -> list[tuple[np.ndarray, np.ndarray]]:
    """(losses, labels) pairs: hand-made cases, then seeded random ones of every kind."""
    rng = np.random.default_rng(1)
    seqs = [np.array([2.0, 1.5, np.nan], np.float32), np.array([2.1, 17.8] + [LN10] * 12, np.float32),
            np.array([LN10] * 25, np.float32)]
    out = [(s, rng.integers(0, 10, len(s))) for s in seqs]
    for k in range(480):
        n = int(rng.integers(5, 120))
        labels = rng.integers(0, 10, n)
        kind = k % 6
        if kind == 0:    # healthy
            s = rng.exponential(1.0, n)
        elif kind == 1:  # blows up somewhere
            s = np.concatenate([rng.exponential(1.0, n // 2), rng.uniform(5, 40, n - n // 2)])
        elif kind == 2:  # collapses to ln C
            s = np.concatenate([rng.exponential(1.0, n // 3), np.full(n - n // 3, LN10)])
        elif kind == 3:  # stuck: from some step on, a constant output distribution -log p[label]
            per_label = rng.choice([0.51, 3.12, 2.21, 4.82, LN10, 0.02], 10)
            s = np.concatenate([rng.exponential(1.0, n // 3), per_label[labels[n // 3:]]])
        elif kind == 5:  # hovering near 3x the start level: the mean rule, at its threshold
            s = np.concatenate([[2.0], LN10 * rng.choice([2.9, 3.0, 3.1, 3.3, 3.9, 0.1], n - 1)])
        else:            # near the thresholds: ln C +- a few ulps, 4x the start +- a little, a confident model
            base = max(LN10, 2.0)
            s = rng.choice([LN10, np.nextafter(np.float32(LN10), 9), FACTOR * base * 0.999, FACTOR * base * 1.001,
                            0.5, 1.0e-4], n)
            s[0] = 2.0
        if rng.random() < 0.05:
            s[int(rng.integers(0, n))] = rng.choice([np.nan, np.inf, -np.inf])
        out.append((s.astype(np.float32), labels))
    return out


@pytest.mark.host_c
def test_c_twin_stops_at_the_same_step_for_the_same_reason(tmp_path):
    require_tool("gcc", "gcc")
    src = tmp_path / "watch.c"
    src.write_text(HARNESS)
    exe = tmp_path / "watch"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-O2", str(src), "-o",
                    str(exe), "-lm"], check=True)
    seqs = _sequences()
    text = "".join("r\n" + "".join(f"{int(v):08x} {int(lab)}\n" for v, lab in zip(s.view(np.uint32), labels,
                                                                                 strict=True))
                   for s, labels in seqs)
    out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout.split("\n")
    codes = {"non-finite": 1, "collapsed": 2, "blown-up": 3, "stuck": 4}
    stops, reasons = 0, set()
    assert len(out) >= len(seqs)
    for (s, labels), line in zip(seqs, out, strict=False):
        expected, healthy = _python_run(s.tolist(), labels)
        result, flags = line.split(" :")
        got = None if result == "none" else (int(result.split()[1]), int(result.split()[2]))
        assert got == (None if expected is None else (expected[0], codes[expected[1]])), (s.tolist(), line)
        assert flags == healthy, (s.tolist(), line)  # the driver checkpoints only when Python would
        stops += expected is not None
        reasons.add(None if expected is None else expected[1])
    assert 100 < stops < len(seqs) and reasons == {None, *codes}  # every outcome is exercised
    assert any("0" in _python_run(s.tolist(), labels)[1] for s, labels in seqs)  # unhealthy moments too


# --- every training path: a forced divergence (a huge learning rate) is a one-line error -------

def _one_line_error(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert "Traceback" not in err
    return lines[-1]


def test_simulator_finetune_divergence_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    import re

    from microtrain.cli import main
    from microtrain.ir import save_graph
    from microtrain.sim.random_graph import random_graph
    from microtrain.train.checkpoint import read_checkpoint

    save_graph(random_graph(0, resolution=8, channels=1, blocks=1, classes=10), tmp_path / "tiny")
    out = tmp_path / "ft"
    code = main(["finetune", str(tmp_path / "tiny.json"), "--data", "digits", "--classes", "10", "--limit", "64",
                 "--test-limit", "20", "--batch-size", "8", "--epochs", "4", "--threads", "1", "--lr", "1e6",
                 "--checkpoint-every", "1", "--out", str(out)])
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2, line
    m = re.search(r"training diverged at step (\d+)", line)
    assert m and "lower the learning rate (--lr 1e+06 now" in line and "--restart" in line
    assert not (out / "model.json").exists()
    if (out / "checkpoint.pt").exists():  # taken while the watch saw no trouble: before the divergence
        state = read_checkpoint(out / "checkpoint.pt")
        assert state["epoch"] * 8 + state["batch_in_epoch"] <= int(m.group(1))
        assert "holds the weights from before it" in line
    else:
        assert "nothing was written" in line


def _diverging_device_run(tmp_path, capsys, target: str, compile_extra: list[str]) -> str:
    from microtrain.cli import main
    from microtrain.compiler.toy_graphs import toy_mbnet
    from microtrain.ir import save_graph

    save_graph(toy_mbnet(2, size=8, in_channels=1, classes=10), tmp_path / "toy")
    proj = tmp_path / "proj"
    assert main(["compile", str(tmp_path / "toy.json"), "--scheme", "last-k:2", "--out", str(proj),
                 *compile_extra]) == 0
    capsys.readouterr()
    code = main(["run", str(proj), "--target", target, "--data", "digits", "--steps", "60", "--lr", "1e5",
                 "--schedule", "constant", "--workdir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not (proj / "trained_model.json").exists()  # nothing exported
    assert not (tmp_path / "w" / "mt_weights.bin").exists()  # the driver stopped before writing weights
    return _one_line_error(err)


@pytest.mark.host_c
def test_host_run_divergence_is_an_error_naming_the_step(tmp_path, capsys):
    require_tool("gcc", "gcc")
    line = _diverging_device_run(tmp_path, capsys, "host", [])
    assert "training diverged at step" in line and "lower the learning rate (--lr 100000 now" in line


@pytest.mark.target
@pytest.mark.host_c
def test_qemu_run_divergence_is_an_error_naming_the_step(tmp_path, capsys):
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    line = _diverging_device_run(tmp_path, capsys, "qemu", ["--target", "cortex-m7"])
    assert "training diverged at step" in line and "lower the learning rate" in line
