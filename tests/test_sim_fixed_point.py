"""The torch fixed-point twin against microtrain.quant on boundary values."""

import numpy as np
import torch

from microtrain import quant
from microtrain.sim import fixed_point as fp

BOUNDARY = np.array([quant.INT32_MIN, quant.INT32_MIN + 1, -(2**30), -65537, -65536, -32768, -257, -256, -255,
                     -129, -128, -127, -3, -2, -1, 0, 1, 2, 3, 127, 128, 255, 256, 32767, 65535, 65536, 2**30,
                     quant.INT32_MAX - 1, quant.INT32_MAX], dtype=np.int64)
MULTIPLIERS = np.array([0, 1, 2**30, 2**30 + 1, 1518500250, 2**31 - 2, 2**31 - 1, quant.INT32_MIN], dtype=np.int64)


def test_high_mul_matches_quant_on_boundaries():
    a, b = np.meshgrid(BOUNDARY, MULTIPLIERS)
    ours = fp.saturating_rounding_doubling_high_mul(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert np.array_equal(ours, quant.saturating_rounding_doubling_high_mul(a, b))
    # the one overflow case saturates
    assert int(fp.saturating_rounding_doubling_high_mul(torch.tensor(quant.INT32_MIN),
                                                         torch.tensor(quant.INT32_MIN))) == quant.INT32_MAX


def test_rounding_divide_by_pot_matches_quant():
    for e in range(0, 32):
        ours = fp.rounding_divide_by_pot(torch.from_numpy(BOUNDARY), e).numpy()
        assert np.array_equal(ours, quant.rounding_divide_by_pot(BOUNDARY, e)), e
    # half away from zero: 3/2 -> 2, -3/2 -> -2, 5/4 -> 1, -5/4 -> -1
    assert fp.rounding_divide_by_pot(torch.tensor([3, -3, 5, -5]), 1).tolist() == [2, -2, 3, -3]
    assert fp.rounding_divide_by_pot(torch.tensor([5, -5, 6, -6]), 2).tolist() == [1, -1, 2, -2]


def test_requantize_matches_quant_random_and_boundary():
    rng = np.random.default_rng(0)
    reals = np.concatenate([rng.uniform(1e-6, 0.99, 200), [2.0**-31, 0.5, 1.0 - 1e-12, 3.0, 1e-10]])
    accs = np.concatenate([BOUNDARY, rng.integers(-(2**31), 2**31, 300)])
    for r in reals:
        m, s = quant.quantize_multiplier(float(r))
        ours = fp.requantize(torch.from_numpy(accs), m, s).numpy()
        assert np.array_equal(ours, quant.requantize(accs, m, s)), r


def test_requantize_per_channel_broadcast():
    rng = np.random.default_rng(1)
    mult, shift = quant.quantize_multipliers(rng.uniform(1e-4, 2.0, 7))
    acc = rng.integers(-(2**20), 2**20, size=(3, 4, 7))
    ours = fp.requantize(torch.from_numpy(acc), torch.from_numpy(mult), torch.from_numpy(shift)).numpy()
    assert np.array_equal(ours, quant.requantize(acc, mult, shift))
