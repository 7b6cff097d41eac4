"""Fleet learning through Flower: a small fleet under Flower's simulation engine (Ray) with
misbehaving devices computes exactly the rounds the definition gives (the same K steps per
device, the accepted updates aggregated in real units and requantized), rejects every bad update
by name, survives a dropout, reports a device whose training diverged (with the step its
divergence watch stopped it at) without aggregating it; a server killed mid-round and restarted
resumes to the same final model as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

flwr = pytest.importorskip("flwr", reason="fleet learning needs flwr (the [fleet] extra)")

import microtrain as mt  # noqa: E402
from microtrain.fleet.aggregate import AggregateConfig, aggregate_real, requantize  # noqa: E402
from microtrain.fleet.device import SimDevice, device_seed, round_order, server_seed  # noqa: E402
from microtrain.fleet.setup import device_samples, load_setup  # noqa: E402

pytestmark = [pytest.mark.fleet, pytest.mark.slow]
SPEC = dict(classes=10, scheme="last-k:2", devices=5, alpha=0.1, local_steps=32, lr=0.02, train_limit=200,
            test_limit=100, faults=("1:nan@1", "2:drop@1", "3:stale@2", "4:shape@2", "4:diverge@1"))
# K = 32: the divergence watch needs up to 30 losses to call a saturated model diverged
ROUNDS = 2


def reference_rounds(out, rounds: int, accepted: dict[int, list[int]]) -> list[np.ndarray]:
    """The fleet's rounds computed directly from the definition, without Flower: every accepted device
    trains K steps from the round's global rows (its samples, order and seed as ``device.py`` says), the
    server takes the fedavg in real units and requantizes with the device's rounding."""
    setup = load_setup(out)
    spec, m = setup.spec, setup.manifest
    sim = SimDevice(setup.graph, setup.scheme, spec.rounding)
    arrays = m.extract(setup.graph)
    data = {}
    for r in range(1, rounds + 1):
        updates, counts = [], []
        for d in accepted[r]:
            if d not in data:
                x, y = device_samples(setup, d)
                data[d] = (sim.prefix(x), y)
            cache, y = data[d]
            order = round_order(len(y), spec.seed, d, r, spec.local_steps)
            got, _ = sim.train(arrays, cache, y, order, spec.lr, device_seed(spec.seed, r, d))
            updates.append(m.to_real(got))
            counts.append(spec.local_steps)
        real, _ = aggregate_real(AggregateConfig(spec.rule), updates, counts, m.to_real(arrays), None)
        arrays = requantize(m, real, spec.rounding, server_seed(spec.seed), r)
    return arrays


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet_sim")
    return out, mt.run_fleet("default", "digits", out, rounds=ROUNDS, transport="simulation", workers=2, **SPEC)


def test_bad_updates_are_rejected_by_name_and_dropouts_survived(simulated):
    _, res = simulated
    h = {row["round"]: row for row in res.history}
    assert h[1]["accepted"] == [0, 3] and h[1]["dropped"] == [2]
    rejected = sorted(h[1]["rejected"], key=lambda x: x["device"])
    assert [(x["device"], x["check"]) for x in rejected] == [(1, "finite"), (4, "diverged")]
    assert "NaN" in rejected[0]["reason"]
    assert f"diverged at step {rejected[1]['step']} of round 1" in rejected[1]["reason"]
    assert "lower the learning rate" in rejected[1]["reason"]
    assert h[2]["accepted"] == [0, 1, 2] and h[2]["dropped"] == []
    assert sorted((x["device"], x["check"]) for x in h[2]["rejected"]) == [(3, "round"), (4, "shape")]
    assert res.rounds == ROUNDS and res.resumed_from == 0


def test_the_diverged_device_stopped_where_the_simulator_stops(simulated):
    from microtrain.fleet.faults import DIVERGE_LR_FACTOR
    from microtrain.train.divergence import TrainingDiverged

    out, res = simulated
    setup = load_setup(out)
    spec = setup.spec
    sim = SimDevice(setup.graph, setup.scheme, spec.rounding)
    x, y = device_samples(setup, 4)
    with pytest.raises(TrainingDiverged) as e:
        sim.train(setup.manifest.extract(setup.graph), sim.prefix(x), y, round_order(len(y), spec.seed, 4, 1, 32),
                  spec.lr * DIVERGE_LR_FACTOR, device_seed(spec.seed, 1, 4))
    got = [x for x in res.history[1]["rejected"] if x["device"] == 4]
    assert got[0]["step"] == e.value.step


def test_flower_rounds_equal_the_definition(simulated):
    out, res = simulated
    setup = load_setup(out)
    want = reference_rounds(out, ROUNDS, {1: [0, 3], 2: [0, 1, 2]})
    got = setup.manifest.extract(load_graph_of(res))
    for s, a, b in zip(setup.manifest.slices, got, want, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=s.name)
    start = setup.manifest.extract(setup.graph)
    assert any(np.any(a != b) for a, b in zip(got, start, strict=True)), "the fleet changed nothing"


def test_frozen_weights_never_move_and_only_trained_rows_travel(simulated):
    out, res = simulated
    setup = load_setup(out)
    final = load_graph_of(res)
    trained = {s.name: set(s.rows) for s in setup.manifest.slices}
    for name, t in setup.graph.tensors.items():
        if t.data is None:
            continue
        a, b = np.asarray(t.data), np.asarray(final.tensors[name].data)
        if name not in trained:
            np.testing.assert_array_equal(a, b, err_msg=f"frozen tensor {name} moved")
        else:
            frozen = [c for c in range(a.shape[0]) if c not in trained[name]]
            np.testing.assert_array_equal(a[frozen], b[frozen], err_msg=f"frozen rows of {name} moved")
    b = res.bytes
    assert b["payload_bytes_per_device_per_round"] == setup.manifest.payload_bytes < b["int8_model_bytes"]
    assert b["payload_bytes_per_device_per_round"] <= b["up_bytes_per_device_per_round"] \
        < b["payload_bytes_per_device_per_round"] + 200 * len(setup.manifest.slices)


def load_graph_of(res):
    from microtrain.ir import load_graph

    return load_graph(res.model_file)


KILL_SPEC = dict(classes=10, scheme="last-k:2", devices=4, alpha=0.1, local_steps=5, lr=0.02, rule="fedavgm",
                 train_limit=160, test_limit=100, faults=("1:nan@2",))
KILL_ARGS = ["--devices", "4", "--alpha", "0.1", "--local-steps", "5", "--lr", "0.02", "--rule", "fedavgm",
             "--train-limit", "160", "--test-limit", "100", "--fault", "1:nan@2"]


def _server(out, address, *extra):
    """The fleet server (``fleet --listen``) in its own process group."""
    cmd = [sys.executable, "-m", "microtrain.cli", "fleet", "default", "--data", "digits", "--rounds", "3",
           *KILL_ARGS, "--listen", address, "--out", str(out), "--json", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait(proc, timeout=900):
    try:
        return proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the server left behind in its own group
        except ProcessLookupError:
            pass


def test_server_killed_mid_round_resumes_to_the_uninterrupted_model(tmp_path):
    """Devices keep running (threads here) while the server process is killed mid-round and started
    again: they reconnect, the restarted server resumes after its last completed round, and the final
    model is the one an uninterrupted run with the same seed reaches."""
    from microtrain.fleet.run import free_port, run_device

    out, address = tmp_path / "killed", f"127.0.0.1:{free_port()}"
    server = _server(out, address, "--kill-in-round", "2")
    deadline = time.time() + 600
    while not (out / "setup" / "spec.json").exists():
        assert server.poll() is None and time.time() < deadline, "the server did not write its setup"
        time.sleep(0.2)
    devices = [threading.Thread(target=run_device, args=(out / "setup", d, address),
                                kwargs={"shared_sim": False, "quiet": True}, daemon=True) for d in range(4)]
    for t in devices:
        t.start()
    _, err = _wait(server)
    assert server.returncode == -signal.SIGKILL, err[-2000:]
    assert "killing the server" in err
    with np.load(out / "fleet_state.npz", allow_pickle=False) as z:
        assert int(z["round"]) == 1  # round 2 was under way: its updates had arrived, nothing was saved
    restarted = _server(out, address)
    stdout, err = _wait(restarted)
    assert restarted.returncode == 0, err[-2000:]
    for t in devices:
        t.join(timeout=60)
        assert not t.is_alive(), "a device did not see the end of the run"
    resumed = json.loads(stdout)
    assert resumed["resumed_from"] == 1 and [h["round"] for h in resumed["history"]] == [0, 1, 2, 3]
    assert [x["device"] for x in resumed["history"][2]["rejected"]] == [1]
    straight = mt.run_fleet("default", "digits", tmp_path / "straight", rounds=3, transport="grpc", **KILL_SPEC)
    assert straight.resumed_from == 0
    with np.load(out / "model.npz") as a, np.load(tmp_path / "straight" / "model.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert [h["accuracy"] for h in resumed["history"]] == [h["accuracy"] for h in straight.history]
    with np.load(out / "fleet_state.npz") as z:
        assert "m0" in z.files  # fedavgm's server momentum was restored too
