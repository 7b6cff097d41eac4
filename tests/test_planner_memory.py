"""Memory planner: exact offsets on hand-made tables, random non-overlap, verifier, in-place."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import microtrain.compiler  # noqa: F401
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.plan_memory import (
    ALGORITHMS,
    Buffer,
    format_plan,
    greedy_by_size,
    lifetimes,
    plan_memory,
    verify_plan,
)
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.scheme import make_scheme


def _bufs(rows):
    return [Buffer(name, size, first, last, "activations", [name]) for name, size, first, last in rows]


def test_greedy_hand_made_table_exact_offsets():
    # a: 64 B steps 0..1, b: 32 B steps 1..2, c: 48 B steps 2..3, d: 16 B steps 0..3
    bufs = _bufs([("a", 64, 0, 1), ("b", 32, 1, 2), ("c", 48, 2, 3), ("d", 16, 0, 3)])
    offsets = greedy_by_size(bufs)
    # largest first: a at 0; c (48) does not meet a in time -> 0; b (32) meets a and c -> 64;
    # d (16) meets all three: a [0,64), b [64,96), c [0,48) -> 96
    assert offsets == {"a": 0, "c": 0, "b": 64, "d": 96}


def test_greedy_fills_a_gap_first_fit():
    bufs = _bufs([("big", 100 * 8, 0, 0), ("late", 10 * 8, 0, 5), ("small", 4 * 8, 1, 5)])
    offsets = greedy_by_size(bufs)
    assert offsets == {"big": 0, "late": 800, "small": 0}


def test_verifier_rejects_overlap():
    bufs = _bufs([("a", 16, 0, 2), ("b", 16, 2, 3)])
    bufs[0].offset, bufs[1].offset = 0, 8
    with pytest.raises(AssertionError, match="overlap"):
        verify_plan(bufs)
    bufs[1].offset = 16
    verify_plan(bufs)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 64), st.integers(0, 20), st.integers(0, 6)), min_size=1, max_size=25),
       st.sampled_from(sorted(ALGORITHMS)))
def test_random_tables_never_overlap(rows, algorithm):
    bufs = _bufs([(f"t{i}", size * 8, first, first + span) for i, (size, first, span) in enumerate(rows)])
    offsets = ALGORITHMS[algorithm](bufs)
    for b in bufs:
        b.offset = offsets[b.name]
    verify_plan(bufs)
    # the arena is never smaller than the bytes alive at any one step
    live = max(sum(b.size for b in bufs if b.first <= s <= b.last) for s in range(30))
    assert max(b.offset + b.size for b in bufs) >= live


def test_training_plan_in_place_and_breakdown():
    graph = toy_mbnet(1)
    names = [n.name for n in graph.weighted_nodes()]
    step = compile_training(graph, make_scheme(graph, names[-4:], {"blocks.1.pointwise1": 1.0}))
    plan = step.plan
    # the int8 ADD overwrote its dying operand, RESHAPE is a view
    assert plan.buffer_of("flatten.out") is plan.buffer_of("pool.out")
    add_out = "blocks.1.residual.out"
    assert plan.buffer_of(add_out) is plan.buffer_of("blocks.1.pointwise2.out")
    bd = plan.peak_breakdown()
    assert sum(v for k, v in bd.items() if k not in ("trainable", "at_step")) == max(plan.live_bytes())
    assert plan.peak_bytes == plan.arena_bytes + plan.trainable_bytes
    assert plan.trainable_bytes == sum(graph.tensors[t].nbytes for t in plan.trainable)
    assert "arena" in format_plan(plan)
    # planner beats no reuse
    assert plan.arena_bytes < plan_memory(step.graph, "no_reuse").arena_bytes


def test_reordering_and_per_channel_lower_the_peak():
    graph = toy_mbnet(2, size=8, blocks=((3, 16, 1), (3, 16, 1)), classes=10)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[2:], {n: 1.0 for n in names[2:]})
    peaks = {}
    for label, opts in {"none": CompileOptions(reorder=False), "reorder": CompileOptions(per_channel=False),
                        "per_channel": CompileOptions()}.items():
        peaks[label] = compile_training(graph, scheme, opts).plan.peak_bytes
    assert peaks["per_channel"] <= peaks["reorder"] < peaks["none"]
    # with reordering no full weight gradient outlives its update: each dies at the next step
    step = compile_training(graph, scheme)
    order = {n.name: i for i, n in enumerate(step.graph.nodes)}
    for b in lifetimes(step.graph):
        if b.kind == "weight_gradients":
            reader = next(n for n in step.graph.nodes if b.tensors[0] in n.inputs)
            assert order[reader.name] == b.first + 1 == b.last


def test_inference_plan_of_the_forward():
    graph = toy_mbnet(0, size=16)
    plan = plan_memory(graph)
    sizes = {b.tensors[0]: b.size for b in plan.buffers}
    # the peak of a chain is at least the largest input+output pair that must coexist
    biggest = max(sizes["blocks.0.pointwise1.out"] + sizes["blocks.0.depthwise.out"], 0)
    assert plan.arena_bytes >= biggest
    assert np.isclose(plan.trainable_bytes, 0)


def test_split_bands_lowers_the_inference_peak_and_keeps_rows_consistent():
    from microtrain.compiler.split_bands import annotate, band_rows, find_chain, split_bands

    graph = toy_mbnet(5, size=32, blocks=((4, 8, 2), (2, 8, 1)), classes=4)
    chain = find_chain(graph)
    assert [graph.nodes[i].name for i in chain] == ["first_conv", "blocks.0.pointwise1", "blocks.0.depthwise",
                                                    "blocks.0.pointwise2"]
    whole = plan_memory(graph).peak_bytes
    banded = split_bands(graph)
    assert plan_memory(banded).peak_bytes < whole
    # every band of every layer: output rows follow from the input rows by the conv formula
    nodes = [graph.nodes[i] for i in chain]
    for info, node in zip(band_rows(graph, nodes, 4), nodes, strict=True):
        k = graph.tensors[node.inputs[1]].shape[1]
        s = node.attrs["stride"][0]
        for (a, b), (i0, i1, pt, pb) in zip(info["rows"], info["in_rows"], strict=True):
            assert (i1 - i0 + pt + pb - k) // s + 1 == b - a
    # bands of the last layer tile its output exactly
    last = annotate(graph, chain, 4).nodes[chain[-1]].attrs["band"]["rows"]
    assert [r for band in last for r in range(*band)] == list(range(16))
