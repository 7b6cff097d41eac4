"""mt_requantize against microtrain.quant.requantize on boundary values, and the update
rounding helpers (mt_update_noise, mt_round_update) against a numpy statement of the
shared/COMMON.md rule."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_harness.rt import assert_equal_first, runtime

from microtrain import quant

pytestmark = pytest.mark.host_c

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


def _boundary_accs() -> list[int]:
    vals = {0, 1, -1, 2, -2, 3, -3, I32_MIN, I32_MIN + 1, I32_MAX, I32_MAX - 1}
    for k in range(1, 31):
        for d in (-1, 0, 1):
            vals.update({(1 << k) + d, -(1 << k) + d})
        vals.update({3 << (k - 1), -(3 << (k - 1))})  # 1.5 * 2^k: exact halves after shifts
    return sorted(v for v in vals if I32_MIN <= v <= I32_MAX)


def _check(rt, accs, mults, shifts):
    accs, mults, shifts = (np.asarray(a, dtype=np.int64) for a in (accs, mults, shifts))
    expected = quant.requantize(accs, mults, shifts)
    actual = np.array([rt.mt_requantize(int(a), int(m), int(s)) for a, m, s in zip(accs, mults, shifts, strict=True)])
    assert_equal_first(actual, expected, "mt_requantize vs quant.requantize")


def test_requantize_boundary_grid(rt):
    accs = _boundary_accs()
    mults = [0, 1, 1 << 30, (1 << 30) + 1, 3 << 29, I32_MAX, I32_MAX - 1, 1518500250]
    shifts = list(range(-31, 31))
    grid = np.array(np.meshgrid(accs, mults, shifts, indexing="ij")).reshape(3, -1)
    _check(rt, *grid)


def test_requantize_int32_min_times_int32_min_saturates(rt):
    # The only overflow of the doubling high multiply (a negative multiplier is outside the
    # kernels' precondition, but the function is the same arithmetic).
    _check(rt, [I32_MIN, I32_MIN], [I32_MIN, I32_MIN], [0, -5])
    assert rt.mt_requantize(I32_MIN, I32_MIN, 0) == I32_MAX


def test_requantize_random(rt):
    rng = np.random.default_rng(4)
    n = 20000
    accs = np.where(rng.random(n) < 0.5, rng.integers(-5000, 5000, n), rng.integers(I32_MIN, I32_MAX, n, endpoint=True))
    mults = rng.integers(1 << 30, 1 << 31, n)
    shifts = rng.integers(-31, 31, n)
    _check(rt, accs, mults, shifts)


def test_requantize_of_quantize_multiplier(rt):
    # End to end with multipliers as the compiler makes them: acc * M within one unit.
    rng = np.random.default_rng(5)
    for real in 10.0 ** rng.uniform(-9, 3, 300):
        m, s = quant.quantize_multiplier(float(real))
        acc = int(rng.integers(-(10**6), 10**6))
        got = rt.mt_requantize(acc, m, s)
        assert got == int(quant.requantize(acc, m, s))
        assert abs(got - acc * real) <= 1 + 1e-6 * abs(acc * real) or abs(acc * real * 2) > I32_MAX


# --- update rounding ---------------------------------------------------------------------

def fmix32(h: np.ndarray) -> np.ndarray:
    # uint64 with explicit mod 2^32: the products of two 32-bit values fit in 64 bits.
    mask = np.uint64(0xFFFFFFFF)
    h = np.asarray(h, dtype=np.uint64)
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(0x85EBCA6B)) & mask
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(0xC2B2AE35)) & mask
    return (h ^ (h >> np.uint64(16))).astype(np.uint32)


def noise(seed: int, step: int, tensor_id: int, index: np.ndarray) -> np.ndarray:
    """COMMON.md: h = fmix32(seed ^ (tensor_id * 0x9E3779B9 mod 2^32)); h = fmix32(h ^ step);
    h = fmix32(h ^ i); u = h >> 8."""
    h = fmix32(np.uint32(seed) ^ np.uint32((tensor_id * 0x9E3779B9) % 2**32))
    h = fmix32(h ^ np.uint32(step))
    h = fmix32(h ^ np.asarray(index, dtype=np.uint32))
    return h >> np.uint32(8)


def test_fmix32_known_values():
    # murmur3 fmix32 reference values (from the algorithm's definition, computed by hand in
    # Python integers to check the numpy version used as the twin below).
    def ref(h: int) -> int:
        h ^= h >> 16
        h = (h * 0x85EBCA6B) % 2**32
        h ^= h >> 13
        h = (h * 0xC2B2AE35) % 2**32
        return h ^ (h >> 16)

    for v in (0, 1, 0xDEADBEEF, 2**32 - 1, 123456789):
        assert int(fmix32(np.uint32(v))) == ref(v)
    assert ref(0) == 0


def test_update_noise_matches_rule(rt):
    rng = np.random.default_rng(6)
    for seed, step, tid in [(0, 0, 0), (1, 2, 3), (2**32 - 1, 2**32 - 1, 2**32 - 1), (12345, 19, 7)]:
        idx = np.concatenate([np.arange(64), rng.integers(0, 2**32, 200, dtype=np.uint64)]).astype(np.uint32)
        expected = noise(seed, step, tid, idx)
        actual = np.array([rt.mt_update_noise(seed, step, tid, int(i)) for i in idx], dtype=np.uint32)
        assert_equal_first(actual, expected, f"mt_update_noise(seed={seed}, step={step}, tensor={tid})")
        assert actual.max() < 2**24


def test_round_update_nearest_and_stochastic(rt):
    rng = np.random.default_rng(7)
    v = np.concatenate([np.arange(-6, 6, 0.25), rng.normal(0, 50, 500), [0.49999997, -0.5, 0.5, 1.5, -1.5, 1e9,
                                                                         -1e9, 2.5e-8]]).astype(np.float32)
    near = np.array([rt.mt_round_update(float(x), 0, 0, 0, 0, 0) for x in v], dtype=np.float32)
    assert_equal_first(near, np.floor(v + np.float32(0.5)), "nearest: floor(v + 0.5f) in float32")
    seed, step, tid = 99, 4, 2
    idx = np.arange(v.size, dtype=np.uint32)
    u = noise(seed, step, tid, idx).astype(np.float32) * np.float32(2.0**-24)
    stoch = np.array([rt.mt_round_update(float(x), 1, seed, step, tid, int(i)) for x, i in zip(v, idx, strict=True)],
                     dtype=np.float32)
    assert_equal_first(stoch, np.floor(v + u), "stochastic: floor(v + u) in float32")
    # stochastic rounding is unbiased: the mean of many roundings of 0.3 approaches 0.3
    many = np.array([rt.mt_round_update(0.3, 1, 1, 0, 0, i) for i in range(4000)])
    assert set(np.unique(many)) == {0.0, 1.0} and abs(many.mean() - 0.3) < 0.03
    assert rt.mt_round_update(2.7, 5, 0, 0, 0, 0) == pytest.approx(2.7)  # unknown mode: unchanged


def test_update_floor_equals_c99_floorf_without_libm(rt):
    """mt_floorf (the update's floor, no libm) through mt_round_update's nearest rule equals
    floor(v + 0.5f) bit for bit: halves, negatives, -0, tiny values, |v| >= 2^23, infinities."""
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.uniform(-300, 300, 2000), rng.uniform(-2, 2, 2000),
                        [-0.5, 0.5, -1.5, -0.0, 0.0, -1e-30, 8388607.5, -8388608.5, 1e30, -1e30, np.inf, -np.inf]])
    v = v.astype(np.float32)
    got = np.array([rt.mt_round_update(float(x), 0, 0, 0, 0, 0) for x in v], np.float32)
    want = np.floor(v + np.float32(0.5)).astype(np.float32)
    assert_equal_first(got.view(np.uint32), want.view(np.uint32), "mt_round_update nearest vs floorf (bits)")
