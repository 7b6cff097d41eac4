"""Lagged in-place (``Buffer.overwrites``): a fused block's output starts at its dying input's
offset. The checker's rule on hand-made tables, the placement and its fallback, the pair
re-derived from the graph, the kernel on random stride-2 shapes written over its input, and
generated C that is bit-exact and touches exactly the planned arena."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_harness.rt import assert_equal_first

import microtrain.compiler  # noqa: F401
from microtrain.compiler import inplace
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.plan_memory import Buffer, greedy_by_size, lifetimes, verify_overwrites, verify_plan
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.interp.reference import run_graph
from microtrain.ir.fused_blocks import FUSED
from microtrain.runtime import twins
from microtrain.scheme import make_scheme


def _pair(victim_size=64, writer_size=32, offsets=(0, 0), writer_first=2, victim_last=2):
    v = Buffer("in", victim_size, 0, victim_last, "activations", ["in"])
    w = Buffer("out", writer_size, writer_first, 5, "activations", ["out"], overwrites="in")
    v.offset, w.offset = offsets
    return v, w


def test_verifier_accepts_only_the_kernels_overlap():
    verify_plan(list(_pair()))  # same offset, writer smaller, alive together at step 2 only
    for bad in (_pair(offsets=(0, 8)),                    # shifted: the kernel needs output == input
                _pair(writer_size=72),                    # the output does not fit in the input
                _pair(writer_first=1),                    # alive together at steps 1 and 2
                _pair(victim_last=3)):
        with pytest.raises(AssertionError, match="overlap"):
            verify_plan(list(bad))
    v, w = _pair()
    w.overwrites = None  # the same overlap without the pair is an ordinary collision
    with pytest.raises(AssertionError, match="overlap"):
        verify_plan([v, w])
    v, w = _pair()
    other = Buffer("other", 16, 2, 2, "activations", ["other"])  # a third buffer may not join
    other.offset = 0
    with pytest.raises(AssertionError, match="overlap"):
        verify_plan([v, w, other])


def test_greedy_starts_the_writer_at_its_victim_and_falls_back_when_blocked():
    v, w = _pair()
    keep = Buffer("keep", 64, 0, 5, "activations", ["keep"])  # alive throughout, placed first by name order
    offsets = greedy_by_size([keep, v, w])
    assert offsets["out"] == offsets["in"] != offsets["keep"]
    assert max(offsets[b.name] + b.size for b in (keep, v, w)) == 128  # without the pair: 160
    # something alive with the writer sits in the victim's bytes: no sharing, no overlap
    v, w = _pair()
    blocker = Buffer("blocker", 48, 3, 4, "activations", ["blocker"])
    offsets = greedy_by_size([v, blocker, w])
    for b in (v, blocker, w):
        b.offset = offsets[b.name]
    assert offsets["out"] != offsets["in"]
    verify_plan([v, blocker, w])


def _toy_step(stream: bool = True):
    # 32x32 image; frozen blocks 0-2 fused; block 1 (stride 2) is the forward's widest point; only
    # the classifier trains, so the backward stays small and the arena is set by the forward
    g = toy_mbnet(seed=4, size=32, blocks=((1, 6, 1), (4, 8, 2), (3, 8, 1), (2, 12, 1)), classes=4)
    scheme = make_scheme(g, ["classifier"], {"classifier": 1.0})
    return g, compile_training(g, scheme, CompileOptions(stream_input=stream))


def test_stride2_block_output_over_its_input_lowers_the_arena():
    g, step = _toy_step()
    pairs = {b.tensors[0]: b.overwrites for b in step.plan.buffers if b.overwrites}
    assert pairs["blocks.1.pointwise2.out"] == "blocks.0.pointwise2.out"
    node = next(n for n in step.graph.nodes if n.op == FUSED and n.outputs[0] == "blocks.1.pointwise2.out")
    assert node.attrs["stages"][1]["name"] == "blocks.1.depthwise"
    by = {b.tensors[0]: b for b in step.plan.buffers}
    assert by["blocks.1.pointwise2.out"].offset == by["blocks.0.pointwise2.out"].offset
    # the same buffers planned without the pairs need more arena
    bufs = lifetimes(step.graph)
    for b in bufs:
        b.overwrites = None
    offsets = greedy_by_size(bufs)
    assert step.plan.arena_bytes < max(offsets[b.name] + b.size for b in bufs)
    # live bytes count the shared bytes once: never more than the arena, the peak is at block 1
    live = step.plan.live_bytes()
    assert max(live) <= step.plan.arena_bytes
    assert step.plan.steps[step.plan.peak_breakdown()["at_step"]] == node.name
    # the graph-side checker accepts the plan's pairs and refuses a pair the graph does not back
    verify_overwrites(step.graph, step.plan.buffers)
    tampered = lifetimes(step.graph)
    logits = next(b for b in tampered if "classifier.out" in b.tensors)
    logits.overwrites = next(b.name for b in tampered if "blocks.3.pointwise2.out" in b.tensors)
    with pytest.raises(AssertionError, match="may not be written over"):
        verify_overwrites(step.graph, tampered)


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    from runtime_harness.rt import runtime
    return runtime(tmp_path_factory)


@pytest.mark.host_c
@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([3, 5]), st.booleans())
def test_c_kernel_stride2_in_place_random_shapes(rt, seed, k, expand):
    from test_fused_blocks import _fused, _run_c, random_block

    rng = np.random.default_rng(seed)
    g = random_block(rng, "1x1" if expand else "3x3", k, 2, False)
    f, node = _fused(g)
    x = rng.integers(-128, 128, g.tensors["x"].shape).astype(np.int8)
    want = run_graph(g, {"x": x})[g.outputs[0]]
    ok = inplace.inverted_bottleneck_inplace_ok(twins.inverted_bottleneck_params(node, f))
    st_, got = _run_c(rt, f, node, x, inplace=True) if g.tensors["x"].nbytes >= want.nbytes else (None, None)
    if ok:
        assert st_ == twins.MT_OK
        assert_equal_first(got, want, f"seed {seed} in place")
    elif st_ is not None:
        assert st_ == twins.MT_ERR_PARAM  # the kernel refuses what the planner would not plan


@pytest.mark.host_c
@pytest.mark.parametrize("stream", [False, True])
def test_generated_c_bit_exact_and_arena_touched_as_planned(tmp_path, stream):
    from conftest import require_tool
    from test_host_codegen import _check_project

    from microtrain.codegen.generate_project import generate_project
    from microtrain.targets import host

    require_tool("gcc", "gcc")
    g, step = _toy_step(stream)
    assert any(b.overwrites for b in step.plan.buffers)
    out = generate_project(step, g, tmp_path / "proj")
    exe = host.build(out, defines=("MT_DEBUG_ARENA", "MT_DEBUG_LOGITS"))
    _check_project(tmp_path, g, step, out, exe, steps=4, n=4)
