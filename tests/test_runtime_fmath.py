"""The libm-free float32 functions (runtime/src/math/, runtime/fmath.py), the learning-rate
schedule (mt_learning_rate, runtime/schedule.py) and the loss (mt_softmax_cross_entropy_f32,
runtime/losses.py): C and Python give the same bits on every input tried, and the functions are
accurate (float64 numpy as the outside reference). tests/test_runtime_target.py shows the C
gives the same bits on the Cortex-M7."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
from runtime_harness.rt import assert_equal_first, ptr, runtime

from microtrain.runtime import cbind, fmath, losses, schedule
from microtrain.train import device_loss

pytestmark = pytest.mark.host_c


def _c_map(fn, xs: np.ndarray) -> np.ndarray:
    return np.array([fn(float(v)) for v in xs], dtype=np.float32)


def _ulp(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in units of the last place of b (float32)."""
    spacing = np.spacing(np.abs(b.astype(np.float32))).astype(np.float64)
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) / spacing


def _floats(rng, n: int, lo: float, hi: float) -> np.ndarray:
    return np.concatenate([rng.uniform(lo, hi, n), np.linspace(lo, hi, 257)]).astype(np.float32)


def test_expf_twin_and_accuracy(tmp_path_factory):
    lib = runtime(tmp_path_factory)
    rng = np.random.default_rng(0)
    xs = np.concatenate([_floats(rng, 4000, -90, 90), _floats(rng, 2000, -1, 1),
                         np.array([0, -0.0, 1e-30, -86.5, -86.49, 88.7, 88.71, np.inf, -np.inf, np.nan], np.float32)])
    c = _c_map(lib.mt_expf, xs)
    py = fmath.expf(xs)
    assert_equal_first(c.view(np.uint32), py.view(np.uint32), "mt_expf vs fmath.expf")
    ok = (xs >= -86.5) & (xs <= 88.7)
    assert _ulp(py[ok], np.exp(xs[ok].astype(np.float64)).astype(np.float32)).max() <= 2
    assert np.all(py[(xs < -86.5)] == 0) and np.isnan(py[-1]) and py[xs == np.inf][0] == np.inf


def test_logf_twin_and_accuracy(tmp_path_factory):
    lib = runtime(tmp_path_factory)
    rng = np.random.default_rng(1)
    bits = rng.integers(1, 0x7F800000, 4000, dtype=np.int64).astype(np.uint32)  # every positive finite float
    xs = np.concatenate([bits.view(np.float32), _floats(rng, 2000, 1, 10), _floats(rng, 500, 0.5, 2),
                         np.array([1, 2, 10, 1e-45, 3.4e38, 0, -1, np.inf, np.nan], np.float32)])
    c = _c_map(lib.mt_logf, xs)
    py = fmath.logf(xs)
    assert_equal_first(c.view(np.uint32), py.view(np.uint32), "mt_logf vs fmath.logf")
    ok = np.isfinite(xs) & (xs > 0) & (xs != 1)
    ref = np.log(xs[ok].astype(np.float64)).astype(np.float32)
    assert _ulp(py[ok], ref).max() <= 2
    assert py[xs == 1][0] == 0 and py[xs == 0][0] == -np.inf and np.isnan(py[xs == -1][0])


def test_cos_pi_twin_and_accuracy(tmp_path_factory):
    lib = runtime(tmp_path_factory)
    us = np.concatenate([np.linspace(-0.5, 1.5, 4001), np.random.default_rng(2).uniform(0, 1, 2000)]).astype(np.float32)
    c = _c_map(lib.mt_cos_pi, us)
    py = fmath.cos_pi(us)
    assert_equal_first(c.view(np.uint32), py.view(np.uint32), "mt_cos_pi vs fmath.cos_pi")
    ref = np.cos(np.pi * np.clip(us.astype(np.float64), 0, 1))
    assert np.abs(py - ref).max() <= 2e-7
    assert fmath.cos_pi(0.0) == 1.0 and fmath.cos_pi(1.0) == -1.0


def test_floorf_twin_equals_c99_floor(tmp_path_factory):
    """mt_floorf and fmath.floorf: the bits of C99 floorf (numpy's floor) on halves, negatives,
    signed zeros, tiny values, the 2^23 boundary, huge values, infinities and NaN."""
    lib = runtime(tmp_path_factory)
    rng = np.random.default_rng(4)
    xs = np.concatenate([rng.uniform(-300, 300, 3000), rng.uniform(-2, 2, 2000), np.arange(-8, 8.5, 0.5),
                         [-0.0, 0.0, -1e-30, 1e-30, -1e-45, 8388607.5, -8388607.5, 8388608, -8388609, 1e30, -1e30,
                          3.4e38, -3.4e38, np.inf, -np.inf, np.nan]]).astype(np.float32)
    c = _c_map(lib.mt_floorf, xs)
    py = fmath.floorf(xs)
    assert_equal_first(c.view(np.uint32), py.view(np.uint32), "mt_floorf vs fmath.floorf")
    with np.errstate(invalid="ignore"):
        want = np.floor(xs)
    assert_equal_first(py.view(np.uint32), want.view(np.uint32), "fmath.floorf vs numpy floor (C99 floorf)")


SCHEDULES = [("cosine", 0.05, 10, 100), ("cosine", 0.01, 0, 7), ("cosine", 0.1, 5, 3), ("cosine", 0.1, 0, 0),
             ("constant", 0.003, 4, 9)]


@pytest.mark.parametrize("kind,base,warmup,total", SCHEDULES)
def test_learning_rate_twin(tmp_path_factory, kind, base, warmup, total):
    lib = runtime(tmp_path_factory)
    s = cbind.LrSchedule(schedule.KINDS[kind], base, warmup, total)
    for t in range(total + 5):
        c = lib.mt_learning_rate(ctypes.byref(s), t)
        assert np.float32(c).view(np.uint32) == np.float32(schedule.learning_rate(kind, base, t, warmup, total)).view(
            np.uint32), f"update {t}"
    if kind == "cosine" and total > warmup:  # the shape: warm-up to base, cosine to 0 at total
        rates = [schedule.learning_rate(kind, base, t, warmup, total) for t in range(total + 1)]
        assert max(rates) == np.float32(base) and rates[total] == 0.0
        if warmup:
            assert rates[0] == pytest.approx(base / warmup)
    with pytest.raises(ValueError, match="schedule"):
        schedule.learning_rate("step", base, 0)


def test_cross_entropy_twin_and_torch(tmp_path_factory):
    """The C loss kernel and runtime/losses.py agree bit for bit; the loss and gradient are within
    float32 rounding of torch's cross-entropy (an outside reference)."""
    lib = runtime(tmp_path_factory)
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((200, 10)) * rng.uniform(0.1, 20, (200, 1))).astype(np.float32)
    labels = rng.integers(0, 10, 200)
    loss, grad = losses.softmax_cross_entropy(logits, labels)
    for i in range(len(labels)):
        x = logits[i].copy()
        out_loss = np.zeros(1, np.float32)
        g = np.zeros(10, np.float32)
        assert lib.mt_softmax_cross_entropy_f32(ptr(x), 10, int(labels[i]), ptr(out_loss), ptr(g)) == 0
        assert out_loss.view(np.uint32)[0] == loss[i:i + 1].view(np.uint32)[0], f"sample {i}"
        assert_equal_first(g.view(np.uint32), grad[i].view(np.uint32), f"gradient of sample {i}")
    t = torch.from_numpy(logits).requires_grad_()
    ref = torch.nn.functional.cross_entropy(t.double(), torch.from_numpy(labels), reduction="sum")
    ref.backward()
    per = torch.nn.functional.cross_entropy(t.detach().double(), torch.from_numpy(labels), reduction="none").numpy()
    np.testing.assert_allclose(loss, per, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(grad, t.grad.numpy(), atol=2e-7)
    # the simulator's autograd wrapper returns exactly these gradients
    t2 = torch.from_numpy(logits).requires_grad_()
    device_loss.device_cross_entropy(t2, torch.from_numpy(labels)).sum().backward()
    assert np.array_equal(t2.grad.numpy().view(np.uint32), grad.view(np.uint32))
