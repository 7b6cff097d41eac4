"""The update rounding rule on hand-worked cases (the C runtime is tested against this)."""

import numpy as np
import pytest

from microtrain.runtime.rounding import apply_update, fmix32, mix, stochastic_offsets, update_factors


def test_fmix32_known_values():
    # murmur3 fmix32: fmix32(0) = 0; fmix32(1) = 0x514E28B7 (worked by hand from the definition)
    assert int(fmix32(np.uint64(0))) == 0
    assert int(fmix32(np.uint64(1))) == 0x514E28B7
    assert int(fmix32(np.uint64(0xFFFFFFFF))) == 0x81F16F39


def test_mix_chain_matches_definition():
    seed, step, tid, i = 7, 3, 2, 11
    h = fmix32(np.uint64(seed ^ ((tid * 0x9E3779B9) & 0xFFFFFFFF)))
    h = fmix32(h ^ np.uint64(step))
    h = fmix32(h ^ np.uint64(i))
    assert int(mix(seed, step, tid, np.array([i]))[0]) == int(h)
    u = stochastic_offsets(seed, step, tid, np.array([i]))
    assert u.dtype == np.float32 and float(u[0]) == (int(h) >> 8) / 2**24


def test_nearest_hand_worked():
    w = np.array([10, 10, 10, -5, 126, -126], dtype=np.int8)
    # lr=1, f=1: v = w - d
    d = np.array([0.4, 0.5, 0.6, -0.5, -3.0, 3.0], dtype=np.float32)
    out = apply_update(w, d, 1.0, np.float32(1.0), "weight", "nearest")
    # 9.6->10, 9.5->floor(10.0)=10, 9.4->9, -4.5->floor(-4.0)=-4, 129->127 (saturate), -129->-127
    assert out.tolist() == [10, 10, 9, -4, 127, -127]
    assert out.dtype == np.int8


def test_float32_order_of_operations():
    # (lr*g) rounds to float32 before the multiply by f: lr=0.1, g=3, f=1/0.1 -> not exactly 3
    lr, g, f = 0.1, np.float32(3.0), np.float32(1.0 / 0.1)
    step = np.float32(np.float32(lr) * g)
    v = np.float32(np.float32(0) - np.float32(step * f))
    out = apply_update(np.array([0], np.int8), np.array([g]), lr, f, "weight")
    assert out[0] == np.floor(np.float32(v + np.float32(0.5)))


def test_bias_saturates_to_int32():
    b = np.array([2**31 - 100, -(2**31) + 100], dtype=np.int32)
    out = apply_update(b, np.array([-1e6, 1e6], np.float32), 1.0, np.float32(1.0), "bias")
    assert out.tolist() == [2**31 - 1, -(2**31)]


def test_stochastic_uses_counter_offsets_and_is_unbiased():
    w = np.zeros(20000, dtype=np.int8)
    d = np.full(20000, -0.3, dtype=np.float32)  # v = +0.3
    out = apply_update(w, d, 1.0, np.float32(1.0), "weight", "stochastic", seed=1, step=5, tensor_id=0)
    u = stochastic_offsets(1, 5, 0, np.arange(20000))
    assert np.array_equal(out, np.floor(np.float32(0.3) + u).astype(np.int8))
    assert abs(out.mean() - 0.3) < 0.02
    # another step, tensor or seed gives other offsets
    assert not np.array_equal(out, apply_update(w, d, 1.0, np.float32(1.0), "weight", "stochastic", seed=1, step=6))


def test_factors_qas_and_plain():
    s_w = np.array([0.01, 0.5])
    assert np.allclose(update_factors(s_w, 0.1, "weight", qas=True), [100.0, 2.0])
    assert np.allclose(update_factors(s_w, 0.1, "bias", qas=True), [1000.0, 20.0])
    assert np.allclose(update_factors(s_w, 0.1, "weight", qas=False), [0.01, 0.5])
    assert update_factors(s_w, 0.1, "bias", qas=False).dtype == np.float32
    # cast once from float64: 1/(0.01*0.1) computed in float64
    assert update_factors(s_w, 0.1, "bias", True)[0] == np.float32(1.0 / (0.01 * 0.1))


def test_unknown_rounding():
    with pytest.raises(ValueError, match="rounding"):
        apply_update(np.zeros(1, np.int8), np.zeros(1), 1.0, 1.0, "weight", "banker")
