"""SYNTHETIC machine-vibration feature windows for anomaly detection (no real recording is used).

The shape is the input of MLPerf Tiny's anomaly-detection benchmark: 5 consecutive frames of 128
log-mel bands = 640 features per window. Every number comes from a seeded generator:
``machine(seed, id)`` draws a machine and ``windows(machine, n, seed, ...)`` its feature windows.

A machine (``Machine``) is a rotating shaft with a gear: shaft frequency f0 (15-50 Hz), a gear of
z teeth meshing at z * f0 with its own harmonic amplitudes and f0 sidebands, shaft harmonics up to
order 12 with a decaying pattern of its own, two or three structural resonances (a centre, a
width and a gain each, which shape everything that falls into them), a noise floor with its own
slope, and a drift: over a run the speed wanders by up to +-4 % and the gain by +-2 dB (a slow
sinusoid with a random period and phase, plus per-window jitter). Two machines differ in all of
these, so a model of one machine's "normal" mis-reads another's.

A window: for each of its 5 frames the speed and the component amplitudes fluctuate a little
(lognormal, 10 %), each spectral line of power P at frequency f adds ``P * exp(-((m(f) - m_b) /
w)^2 / 2)`` to mel band b (m the mel scale, w one band width), the noise floor and the
resonance gains are applied, and the band powers become dB (10 log10), plus 0.5 dB of
measurement noise. Bands span 0-8 kHz (16 kHz sampling, as ToyADMOS).

Anomalies (``ANOMALIES``), each a physical fault signature added to a normal window:
  bearing     an outer-race defect: lines at BPFO = r * f0 (r in 3.1-5.4, not an integer) and its
              harmonics 2-5, each with f0 sidebands, 8-20 dB above the floor there
  imbalance   the 1x and 2x shaft lines 10-16 dB stronger
  looseness   half-order lines (0.5x, 1.5x, ... 5.5x) and a noise floor raised by 3-6 dB
Features are returned in dB; ``FEATURE_MEAN`` / ``FEATURE_SCALE`` standardise them (fixed
constants, so every machine is seen through the same quantization).
"""

from __future__ import annotations

import dataclasses

import numpy as np

FRAMES = 5
BANDS = 128
FEATURES = FRAMES * BANDS
SAMPLE_RATE = 16000.0
ANOMALIES = ("bearing", "imbalance", "looseness")
FEATURE_MEAN = -60.0
FEATURE_SCALE = 12.0
"""Standardisation of the dB features: (dB - FEATURE_MEAN) / FEATURE_SCALE."""


def _mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


_BAND_MEL = np.linspace(_mel(20.0), _mel(SAMPLE_RATE / 2), BANDS)
_BAND_WIDTH = float(_BAND_MEL[1] - _BAND_MEL[0])
_BAND_HZ = 700.0 * (10 ** (_BAND_MEL / 2595.0) - 1.0)


@dataclasses.dataclass(frozen=True)
class Machine:
    """Everything that makes one machine sound like itself (see the module doc)."""

    ident: int
    f0: float                 # shaft frequency, Hz
    teeth: int                # gear teeth: mesh at teeth * f0
    shaft_db: np.ndarray      # [12] level of shaft harmonics 1..12, dB
    mesh_db: np.ndarray       # [3] level of mesh harmonics 1..3, dB
    sideband_db: float        # level of the +-f0 sidebands around each mesh line, relative
    resonances: np.ndarray    # [R, 3] centre Hz, width Hz, gain dB
    floor_db: float           # noise floor at 1 kHz, dB
    floor_slope: float        # dB per octave
    drift_speed: float        # relative amplitude of the slow speed drift
    drift_gain_db: float      # amplitude of the slow gain drift, dB
    drift_period: float       # windows per drift cycle
    drift_phase: float


def machine(seed: int, ident: int) -> Machine:
    """The machine number ``ident`` of the population drawn with ``seed``."""
    rng = np.random.default_rng([seed, ident, 17])
    n_res = int(rng.integers(2, 4))
    res = np.stack([rng.uniform(300, 6000, n_res), rng.uniform(80, 600, n_res), rng.uniform(6, 18, n_res)], axis=1)
    return Machine(ident=ident, f0=float(rng.uniform(15, 50)), teeth=int(rng.integers(17, 61)),
                   shaft_db=-np.sort(rng.uniform(0, 30, 12)) + rng.normal(0, 3, 12) - 20.0,
                   mesh_db=-np.sort(rng.uniform(0, 20, 3)) - 10.0, sideband_db=float(rng.uniform(-14, -4)),
                   resonances=res, floor_db=float(rng.uniform(-75, -60)), floor_slope=float(rng.uniform(-4, 1)),
                   drift_speed=float(rng.uniform(0.01, 0.04)), drift_gain_db=float(rng.uniform(0.5, 2.0)),
                   drift_period=float(rng.uniform(200, 800)), drift_phase=float(rng.uniform(0, 2 * np.pi)))


def _lines(m: Machine, speed: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and powers (dB) of the normal spectral lines, per frame: [F, L] each."""
    k = np.arange(1, 13)
    freqs = [speed[:, None] * k[None]]
    levels = [np.broadcast_to(m.shaft_db, (len(speed), 12))]
    for h in range(3):
        mesh = speed * m.teeth * (h + 1)
        freqs += [mesh[:, None], (mesh - speed)[:, None], (mesh + speed)[:, None]]
        lv = m.mesh_db[h]
        levels += [np.full((len(speed), 1), lv), np.full((len(speed), 2), lv + m.sideband_db)]
    f = np.concatenate(freqs, axis=1)
    db = np.concatenate(levels, axis=1) + rng.normal(0, 0.4, (len(speed), f.shape[1]))  # 10 % amplitude
    return f, db


def _fault_lines(kind: str, m: Machine, speed: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = len(speed)
    if kind == "bearing":
        ratio = rng.uniform(3.1, 5.4)
        lift = rng.uniform(8, 20)
        bpfo = speed * ratio
        f = np.concatenate([np.stack([bpfo * h, bpfo * h - speed, bpfo * h + speed], axis=1) for h in range(1, 6)],
                           axis=1)
        base = m.floor_db + lift
        db = np.tile([base, base - 6, base - 6], 5)[None].repeat(n, 0) - np.repeat(np.arange(5) * 2.0, 3)[None]
        return f, db
    if kind == "imbalance":
        boost = rng.uniform(10, 16)
        return speed[:, None] * np.array([1.0, 2.0])[None], (m.shaft_db[:2] + boost)[None].repeat(n, 0)
    if kind == "looseness":
        orders = np.arange(11) + 0.5
        return speed[:, None] * orders[None], np.broadcast_to(m.shaft_db[:11] - 4.0, (n, 11)).copy()
    raise ValueError(f"unknown anomaly {kind!r}; choose from {', '.join(ANOMALIES)}")


def _frame_db(m: Machine, f: np.ndarray, db: np.ndarray, gain_db: np.ndarray, floor_lift: float) -> np.ndarray:
    """Mel-band powers in dB of frames [F] with lines (f [F, L], db [F, L])."""
    mel = _mel(np.clip(f, 1.0, SAMPLE_RATE / 2))
    w = np.exp(-0.5 * ((mel[:, :, None] - _BAND_MEL[None, None]) / _BAND_WIDTH) ** 2)  # [F, L, B]
    power = np.einsum("fl,flb->fb", 10 ** (db / 10), w)
    floor = m.floor_db + floor_lift + m.floor_slope * np.log2(_BAND_HZ / 1000.0)
    power = power + 10 ** (floor / 10)[None]
    shape = np.zeros(BANDS)
    for centre, width, gain in m.resonances:
        shape += gain * np.exp(-0.5 * ((_BAND_HZ - centre) / width) ** 2)
    return 10 * np.log10(power) + shape[None] + gain_db[:, None]


def windows(m: Machine, n: int, seed: int, anomaly: str | None = None, start: int = 0) -> np.ndarray:
    """``n`` feature windows (float32 [n, 640], dB) of machine ``m`` from window ``start`` of its run;
    with ``anomaly`` each window carries that fault. Seeded: the same arguments give the same windows."""
    if anomaly is not None and anomaly not in ANOMALIES:
        raise ValueError(f"unknown anomaly {anomaly!r}; choose from {', '.join(ANOMALIES)}")
    rng = np.random.default_rng([seed, m.ident, start, n, ANOMALIES.index(anomaly) + 1 if anomaly else 0])
    out = np.empty((n, FEATURES), dtype=np.float32)
    for i in range(n):
        t = start + i
        slow = np.sin(2 * np.pi * t / m.drift_period + m.drift_phase)
        speed = m.f0 * (1 + m.drift_speed * slow + rng.normal(0, 0.004)) * (1 + rng.normal(0, 0.002, FRAMES))
        gain = m.drift_gain_db * slow + rng.normal(0, 0.3, FRAMES)
        f, db = _lines(m, speed, rng)
        lift = 0.0
        if anomaly is not None:
            ff, fdb = _fault_lines(anomaly, m, speed, rng)
            f, db = np.concatenate([f, ff], axis=1), np.concatenate([db, fdb], axis=1)
            lift = rng.uniform(3, 6) if anomaly == "looseness" else 0.0
        frames = _frame_db(m, f, db, gain, lift) + rng.normal(0, 0.5, (FRAMES, BANDS))
        out[i] = frames.reshape(-1)
    return out


def standardise(x: np.ndarray) -> np.ndarray:
    """dB features -> the model's float input scale (fixed constants, the same for every machine)."""
    return ((np.asarray(x, dtype=np.float32) - np.float32(FEATURE_MEAN)) / np.float32(FEATURE_SCALE)).astype(np.float32)


def anomaly_test_set(m: Machine, seed: int, normals: int, per_anomaly: int, start: int = 100000
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Held-out windows of machine ``m``: ``normals`` normal ones and ``per_anomaly`` of each fault,
    labels 0 (normal) / 1 (anomaly); taken from late in the run (``start``), apart from training windows."""
    parts = [windows(m, normals, seed, None, start)]
    parts += [windows(m, per_anomaly, seed, a, start) for a in ANOMALIES]
    labels = np.concatenate([np.zeros(normals, np.int32), np.ones(per_anomaly * len(ANOMALIES), np.int32)])
    return np.concatenate(parts), labels


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of anomaly scores (higher = more anomalous), scikit-learn's."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)))
