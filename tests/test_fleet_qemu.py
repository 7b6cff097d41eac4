"""A fleet round with firmware devices (the compiled training step on an emulated Cortex-M7) and
simulated devices together, all connected to one Flower server over the loopback: every round
completes with every device's update accepted, and each firmware device's trained rows equal
what the simulator computes from the same global rows, samples and seed; a firmware device whose
learning rate is far too high is stopped by the driver's divergence watch (the C twin of
``train/divergence.py``) and reports it, at the step where the simulator's watch stops."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_tool
from test_host_codegen import assert_trained_equal

pytest.importorskip("flwr", reason="fleet learning needs flwr (the [fleet] extra)")

import microtrain as mt  # noqa: E402
from microtrain.fleet.device import SimDevice, device_seed, round_order  # noqa: E402
from microtrain.fleet.faults import DIVERGE_LR_FACTOR  # noqa: E402
from microtrain.fleet.setup import device_samples, load_setup  # noqa: E402
from microtrain.train.divergence import TrainingDiverged  # noqa: E402

pytestmark = [pytest.mark.fleet, pytest.mark.target, pytest.mark.slow]
SPEC = dict(classes=10, scheme="last-k:2", devices=4, alpha=1.0, local_steps=32, lr=0.02, train_limit=120,
            test_limit=100, qemu=2, faults=("1:diverge@2",))  # K = 32: the watch may need 30 losses
ROUNDS = 2


def _load(path, n):
    with np.load(path, allow_pickle=False) as z:
        return [z[f"a{i}"] for i in range(n)]


def test_qemu_and_simulated_devices_share_a_round_and_agree(tmp_path):
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    res = mt.run_fleet("default", "digits", tmp_path, rounds=ROUNDS, transport="grpc", keep_updates=True, **SPEC)
    assert res.transport == "grpc" and res.rounds == ROUNDS
    h = {row["round"]: row for row in res.history}
    assert h[1]["accepted"] == [0, 1, 2, 3] and not h[1]["rejected"]
    assert h[2]["accepted"] == [0, 2, 3] and [(x["device"], x["check"]) for x in h[2]["rejected"]] == [(1, "diverged")]
    for row in res.history[1:]:
        assert row["firmware"] == [0, 1] and not row["dropped"], row
    setup = load_setup(tmp_path)
    m, spec = setup.manifest, setup.spec
    sim = SimDevice(setup.graph, setup.scheme, spec.rounding)
    moved = 0
    for r in range(1, ROUNDS + 1):
        d_round = tmp_path / "updates" / f"round-{r:04d}"
        start = _load(d_round / "global.npz", len(m.slices))
        for device in (0, 1):
            x, y = device_samples(setup, device)
            order = round_order(len(y), spec.seed, device, r, spec.local_steps)
            if (device, r) == (1, 2):  # the firmware's watch stopped it where the simulator's stops
                with pytest.raises(TrainingDiverged) as e:
                    sim.train(start, sim.prefix(x), y, order, spec.lr * DIVERGE_LR_FACTOR, device_seed(spec.seed, r, 1))
                assert h[2]["rejected"][0]["step"] == e.value.step, h[2]["rejected"]
                assert not (d_round / "device-1.npz").exists()
                continue
            want, _ = sim.train(start, sim.prefix(x), y, order, spec.lr, device_seed(spec.seed, r, device))
            got = _load(d_round / f"device-{device}.npz", len(m.slices))
            for s, a, b, s0 in zip(m.slices, got, want, start, strict=True):
                assert a.dtype == np.dtype(s.dtype)
                assert_trained_equal(a, b, f"round {r} device {device} {s.name} (QEMU vs simulator)")
                moved += int(np.sum(a != s0))
    assert moved > 0, "the firmware devices trained nothing: the comparison would prove nothing"
