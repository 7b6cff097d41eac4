"""Simulator forward == reference interpreter, bit for bit, on random graphs and a zoo model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microtrain.interp.reference import run_graph
from microtrain.scheme import make_scheme
from microtrain.sim.random_graph import random_graph, random_inputs
from microtrain.sim.simulator import Simulator


def _assert_all_equal(graph, x, batched):
    for i in range(x.shape[0]):
        ref = run_graph(graph, {graph.inputs[0]: x[i:i + 1]}, keep_all=True)
        for name, value in ref.items():
            if graph.tensors[name].is_const:
                continue
            got = batched[name][i:i + 1]
            assert got.dtype == value.dtype, name
            if not np.array_equal(got, value):
                idx = np.argwhere(got != value)[0]
                pytest.fail(f"sample {i} tensor {name}: first mismatch at {idx.tolist()}: "
                            f"sim {got[tuple(idx)]} != interpreter {value[tuple(idx)]}")


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), res=st.sampled_from([5, 8, 9]), ch=st.sampled_from([1, 3]),
       width=st.sampled_from([4, 8]), blocks=st.integers(1, 3))
def test_forward_bit_exact_random_graphs(seed, res, ch, width, blocks):
    g = random_graph(seed, resolution=res, channels=ch, width=width, blocks=blocks)
    x = random_inputs(g, 3, seed)
    _assert_all_equal(g, x, Simulator(g).infer_codes(x))


def test_forward_with_cut_and_cache_equals_full():
    g = random_graph(3, blocks=3)
    x = random_inputs(g, 4, 1)
    scheme = make_scheme(g, bias_layers=["blocks.2.pointwise1"], weight_ratios={"blocks.2.depthwise": 0.5})
    sim = Simulator(g, scheme)
    assert sim.cut == [n.name for n in g.nodes].index("blocks.2.pointwise1")
    assert set(sim.live_at_cut()) == {"blocks.1.residual.out"}
    direct, _ = sim.forward(x)
    cached, _ = sim.forward(cached=sim.prefix(x))
    full = Simulator(g).infer_codes(x)["classifier.out"].astype(np.int32)
    out_t = g.tensors["classifier.out"]
    # the logits dequantized as the device does it: (float)(q - z) * float32(s)
    expected = ((full - out_t.quant.z).astype(np.float32) * np.float32(out_t.quant.s)).astype(np.float32)
    assert np.array_equal(direct.detach().numpy(), expected)
    assert np.array_equal(cached.detach().numpy(), expected)


@pytest.mark.zoo
def test_forward_bit_exact_zoo_model():
    from conftest import zoo_path_or_skip

    path = zoo_path_or_skip("mcunet-5fps")
    mcu_zoo = pytest.importorskip("microtrain.frontend.mcu_zoo", reason="MCU-zoo importer not available yet")
    g = mcu_zoo.import_zoo_model(path)
    x = random_inputs(g, 1, 0)
    _assert_all_equal(g, x, Simulator(g).infer_codes(x))


def test_sim_rule_table_covers_every_op():
    from microtrain.ir.ops import Op
    from microtrain.sim.ops import SIM_EXEMPT, SIM_RULES

    base_ops = {Op.CONV2D, Op.FULLY_CONNECTED, Op.ADD, Op.GLOBAL_AVG_POOL, Op.RESHAPE, Op.DEQUANTIZE,
                Op.SOFTMAX_CROSS_ENTROPY}  # the forward ops; the compiler's backward ops are not simulated
    assert base_ops <= set(SIM_RULES) | SIM_EXEMPT
    assert not set(SIM_RULES) & SIM_EXEMPT


def test_with_resolution_runs_bit_exact():
    from microtrain.sim.resolution import with_resolution

    g = with_resolution(random_graph(2, resolution=16, blocks=2), 12)
    assert g.tensors["input"].shape == (1, 12, 12, 3) and g.meta["preprocess"]["resolution"] == [12, 12]
    x = random_inputs(g, 2, 4)
    _assert_all_equal(g, x, Simulator(g).infer_codes(x))
