"""The synthetic machine-vibration generator (data/vibration.py): seeded and reproducible, each
machine its own spectrum, faults that change the spectrum where their physics says."""

from __future__ import annotations

import numpy as np
import pytest

from microtrain.data import vibration as vib


def test_seeded_windows_are_reproducible_and_machines_differ():
    m = vib.machine(0, 3)
    a = vib.windows(m, 6, seed=1)
    assert a.shape == (6, vib.FEATURES) and a.dtype == np.float32 and np.all(np.isfinite(a))
    assert np.array_equal(a, vib.windows(vib.machine(0, 3), 6, seed=1))
    assert not np.array_equal(a, vib.windows(m, 6, seed=2))
    other = vib.windows(vib.machine(0, 4), 6, seed=1)
    # two machines differ far more than two windows of one machine
    within = np.abs(a[0] - a[1]).mean()
    between = np.abs(a.mean(0) - other.mean(0)).mean()
    assert between > 2 * within
    x = vib.standardise(a)
    assert -4 < float(x.mean()) < 4 and float(x.std()) > 0.2


@pytest.mark.parametrize("kind", vib.ANOMALIES)
def test_each_fault_raises_the_spectrum(kind):
    m = vib.machine(0, 7)
    normal = vib.windows(m, 20, seed=5).reshape(20, vib.FRAMES, vib.BANDS).mean((0, 1))
    faulty = vib.windows(m, 20, seed=5, anomaly=kind).reshape(20, vib.FRAMES, vib.BANDS).mean((0, 1))
    lift = faulty - normal
    assert lift.max() > 3.0, f"{kind}: no band rose by 3 dB"
    assert np.median(lift) > -0.5, f"{kind}: a fault adds energy; it does not take it away"


def test_test_set_labels_and_auc():
    m = vib.machine(0, 1)
    x, y = vib.anomaly_test_set(m, seed=0, normals=10, per_anomaly=4)
    assert x.shape == (22, vib.FEATURES) and list(y) == [0] * 10 + [1] * 12
    assert vib.auc(np.arange(22.0), y) == 1.0 and vib.auc(-np.arange(22.0), y) == 0.0
    with pytest.raises(ValueError, match="unknown anomaly"):
        vib.windows(m, 1, 0, anomaly="rust")
