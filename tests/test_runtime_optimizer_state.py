"""Gradient accumulation and momentum inside the update kernels (mt_update_params' accum /
momentum buffers) against the Python twin (rounding.optimizer_direction + apply_update), bit for
bit, over several updates of K samples each, per channel and whole, int8 weights and int32
biases; and the plain-SGD result when K = 1 and no momentum."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from runtime_harness.rt import assert_equal_first, channels, ptr, runtime

from microtrain.runtime import cbind, rounding, twins

pytestmark = pytest.mark.host_c
F32 = np.float32


def _fptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


@pytest.mark.parametrize("k,mu", [(1, 0.0), (3, 0.0), (1, 0.9), (4, 0.5)])
def test_weights_and_biases_accumulate_and_momentum(tmp_path_factory, k, mu):
    rt = runtime(tmp_path_factory)
    rng = np.random.default_rng(10 * k + int(10 * mu))
    out_c, channel_size = 7, 12
    w = rng.integers(-127, 128, (out_c, channel_size)).astype(np.int8)
    b = rng.integers(-5000, 5000, out_c).astype(np.int32)
    kept = np.array([5, 1, 3], np.int32)
    fw = rounding.update_factors(10 ** rng.uniform(-3, -1, out_c), 0.02, "weight", True)
    fb = rounding.update_factors(10 ** rng.uniform(-3, -1, out_c), 0.02, "bias", True)
    index = kept[:, None].astype(np.int64) * channel_size + np.arange(channel_size)[None]
    scale = F32(1.0 / k)
    # C state and Python state, separately
    c_acc_w, c_mom_w = (np.zeros((kept.size, channel_size), F32) for _ in range(2))
    c_acc_b, c_mom_b = (np.zeros(kept.size, F32) for _ in range(2))
    p_acc_w, p_mom_w = (np.zeros((kept.size, channel_size), F32) for _ in range(2))
    p_acc_b, p_mom_b = (np.zeros(kept.size, F32) for _ in range(2))
    cw, cb, pw, pb = w.copy(), b.copy(), w.copy(), b.copy()
    lr, seed, tid = 0.01, 77, 2
    for sample in range(4 * k):
        t, apply = sample // k, sample % k == k - 1
        gw = (rng.normal(0, 1, (kept.size, channel_size)) * 40 / (lr * fw[kept, None])).astype(F32)
        gb = (rng.normal(0, 1, kept.size) * 40 / (lr * fb[kept])).astype(F32)
        u = cbind.UpdateParams(lr, twins.ROUNDING_MODES["stochastic"], seed, t, tid,
                               _fptr(c_acc_w if k > 1 else None), int(apply), float(scale),
                               _fptr(c_mom_w if mu else None), mu)
        # weights one kept channel at a time (as the reordered step applies them)
        for j in range(kept.size):
            ch = channels(kept, kept.size, j, j + 1)
            assert rt.mt_sgd_update_s8(ptr(cw), 0, channel_size, ptr(fw), ptr(gw[j:j + 1].copy()), ctypes.byref(ch),
                                       ctypes.byref(u)) == twins.MT_OK
        ub = cbind.UpdateParams(lr, twins.ROUNDING_MODES["stochastic"], seed, t, tid + 1,
                                _fptr(c_acc_b if k > 1 else None), int(apply), float(scale),
                                _fptr(c_mom_b if mu else None), mu)
        ch = channels(kept, kept.size, 0, kept.size)
        assert rt.mt_sgd_update_s32(ptr(cb), ptr(fb), ptr(gb), ctypes.byref(ch), ctypes.byref(ub)) == twins.MT_OK
        dw = rounding.optimizer_direction(gw, p_acc_w if k > 1 else None, apply, scale, p_mom_w if mu else None, mu)
        db = rounding.optimizer_direction(gb, p_acc_b if k > 1 else None, apply, scale, p_mom_b if mu else None, mu)
        assert (dw is None) == (not apply) == (db is None)
        if apply:
            pw[kept] = rounding.apply_update(pw[kept], dw, lr, fw[kept, None], "weight", "stochastic", seed, t, tid,
                                             index)
            pb[kept] = rounding.apply_update(pb[kept], db, lr, fb[kept], "bias", "stochastic", seed, t, tid + 1,
                                             kept.astype(np.int64))
        assert_equal_first(cw, pw, f"weights after sample {sample}")
        assert_equal_first(cb, pb, f"biases after sample {sample}")
        for c, p, what in ((c_acc_w, p_acc_w, "accum"), (c_mom_w, p_mom_w, "momentum"), (c_acc_b, p_acc_b, "b accum"),
                           (c_mom_b, p_mom_b, "b momentum")):
            assert_equal_first(c.view(np.uint32), p.view(np.uint32), f"{what} after sample {sample}")
        if not apply:
            assert np.array_equal(cw, w) or sample >= k  # nothing moves before the first K-th sample
    assert (cw != w).any() and (cb != b).any()
    if k > 1:
        assert not c_acc_w.any() and not c_acc_b.any()  # emptied by the last update
    if mu:
        assert c_mom_w.any()
