"""The fused update kernels against microtrain/runtime/rounding.py (the simulator's statement
of the shared/COMMON.md rule), bit for bit: nearest and stochastic rounding, QAS and plain
factors, kept channels in any order and one at a time, sliced and full weight storage,
saturation of int8 weights and int32 biases."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from runtime_harness.rt import assert_equal_first, channels, ptr, runtime

from microtrain.runtime import cbind, rounding, twins

pytestmark = pytest.mark.host_c


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


def _params(lr, mode, seed, step, tensor_id):
    return cbind.UpdateParams(lr, twins.ROUNDING_MODES[mode], seed, step, tensor_id)


@pytest.mark.parametrize("mode", ["nearest", "stochastic"])
@pytest.mark.parametrize("qas", [True, False])
def test_sgd_update_s8_matches_rounding_py(rt, mode, qas):
    rng = np.random.default_rng(11 + qas + 2 * (mode == "stochastic"))
    for trial in range(6):
        out_c, kh, kw, cpg = int(rng.integers(1, 12)), *(int(v) for v in rng.choice([1, 3], 2)), int(rng.integers(1, 9))
        channel_size = kh * kw * cpg
        w = rng.integers(-127, 128, (out_c, kh, kw, cpg)).astype(np.int8)
        if trial == 0:
            w.ravel()[:4] = [-127, 127, -127, 127][: w.size]
        s_w, s_x = 10 ** rng.uniform(-3, -1, out_c), float(10 ** rng.uniform(-2, -1))
        factors = rounding.update_factors(s_w, s_x, "weight", qas)
        kept = np.sort(rng.choice(out_c, size=max(1, out_c // 2), replace=False)).astype(np.int32)
        lr, seed, step, tid = float(np.float32(10 ** rng.uniform(-3, -1))), int(rng.integers(0, 2**32)), trial, 3
        # gradients w.r.t. real weights, scaled so that steps (lr*g*f) of 0.3 to 30 units occur,
        # hence fractional roundings, moves of several units and saturation at +-127
        sigma = 10 ** rng.uniform(-0.5, 1.5)
        g = (rng.normal(0, 1, (kept.size, channel_size)) * sigma / (lr * factors[kept, None])).astype(np.float32)
        index = (kept[:, None].astype(np.int64) * channel_size + np.arange(channel_size)[None])
        expected = w.copy().reshape(out_c, channel_size)
        expected[kept] = rounding.apply_update(expected[kept], g, lr, factors[kept, None], "weight", mode, seed, step,
                                               tid, index)
        u = _params(lr, mode, seed, step, tid)
        # full storage, all kept channels in one call
        full = w.copy()
        ch = channels(kept, kept.size, 0, kept.size)
        assert rt.mt_sgd_update_s8(ptr(full), 0, channel_size, ptr(factors), ptr(g), ctypes.byref(ch),
                                   ctypes.byref(u)) == twins.MT_OK
        assert_equal_first(full.reshape(out_c, -1), expected, f"mt_sgd_update_s8 {mode} qas={qas} trial {trial}")
        assert (full.reshape(out_c, -1) != w.reshape(out_c, -1)).any() or trial > 0
        # sliced storage (only the kept rows), one channel at a time, in reverse order
        sliced = w.reshape(out_c, -1)[kept].copy()
        for j in reversed(range(kept.size)):
            ch = channels(kept, kept.size, j, j + 1)
            gj = np.ascontiguousarray(g[j:j + 1])
            assert rt.mt_sgd_update_s8(ptr(sliced), 1, channel_size, ptr(factors), ptr(gj), ctypes.byref(ch),
                                       ctypes.byref(u)) == twins.MT_OK
        assert_equal_first(sliced, expected[kept], f"sliced one-channel-at-a-time {mode} qas={qas}")


@pytest.mark.parametrize("mode", ["nearest", "stochastic"])
def test_sgd_update_s32_matches_rounding_py(rt, mode):
    rng = np.random.default_rng(21 + (mode == "stochastic"))
    for trial in range(6):
        c = int(rng.integers(1, 40))
        b = rng.integers(-(10**6), 10**6, c).astype(np.int32)
        if trial == 0:  # int32 extremes: (float)b rounds to 2^31 and must saturate back
            b[:3] = [2**31 - 1, -(2**31), 2**31 - 100][:c]
        s_w, s_x = 10 ** rng.uniform(-3, -1, c), float(10 ** rng.uniform(-2, -1))
        factors = rounding.update_factors(s_w, s_x, "bias", True)
        g = (rng.normal(0, 1, c) * s_w * s_x * 10 ** rng.uniform(0, 4)).astype(np.float32)
        if trial == 0:
            g[:3] = [-1e3, 1e3, -1e3][:c]  # push past the int32 limits
        lr, seed = float(np.float32(0.05)), int(rng.integers(0, 2**32))
        expected = rounding.apply_update(b, g, lr, factors, "bias", mode, seed, trial, 5, np.arange(c))
        out = b.copy()
        ch = channels(None, c, 0, c)
        u = _params(lr, mode, seed, trial, 5)
        assert rt.mt_sgd_update_s32(ptr(out), ptr(factors), ptr(g), ctypes.byref(ch), ctypes.byref(u)) == twins.MT_OK
        assert_equal_first(out, expected, f"mt_sgd_update_s32 {mode} trial {trial}")
        if trial == 0:
            assert out[0] == 2**31 - 1 or c < 1


def test_update_kernels_reject_bad_arguments(rt):
    w = np.zeros(8, np.int8)
    f, g = np.ones(2, np.float32), np.zeros(8, np.float32)
    ch = channels(None, 2, 0, 2)
    bad_mode = cbind.UpdateParams(0.1, 7, 0, 0, 0)
    assert rt.mt_sgd_update_s8(ptr(w), 0, 4, ptr(f), ptr(g), ctypes.byref(ch), ctypes.byref(bad_mode)) == \
        twins.MT_ERR_PARAM
    u = cbind.UpdateParams(0.1, 0, 0, 0, 0)
    assert rt.mt_sgd_update_s8(ptr(w), 2, 4, ptr(f), ptr(g), ctypes.byref(ch), ctypes.byref(u)) == twins.MT_ERR_PARAM
    bad_range = channels(None, 2, 1, 3)
    assert rt.mt_sgd_update_s8(ptr(w), 0, 4, ptr(f), ptr(g), ctypes.byref(bad_range), ctypes.byref(u)) == \
        twins.MT_ERR_PARAM
    assert rt.mt_sgd_update_s8(None, 0, 4, ptr(f), ptr(g), ctypes.byref(ch), ctypes.byref(u)) == twins.MT_ERR_NULL
    b = np.zeros(2, np.int32)
    assert rt.mt_sgd_update_s32(ptr(b), ptr(f), ptr(g), ctypes.byref(ch), ctypes.byref(bad_mode)) == \
        twins.MT_ERR_PARAM


def test_nan_gradient_keeps_the_value(rt):
    # Documented C behaviour (rounding.py leaves NaN undefined): a NaN step changes nothing.
    w = np.array([5, -7], np.int8)
    g = np.array([np.nan, 1.0], np.float32)
    f = np.ones(1, np.float32)
    ch = channels(None, 1, 0, 1)
    u = cbind.UpdateParams(1.0, 0, 0, 0, 0)
    assert rt.mt_sgd_update_s8(ptr(w), 0, 2, ptr(f), ptr(g), ctypes.byref(ch), ctypes.byref(u)) == 0
    assert w.tolist() == [5, -8]
