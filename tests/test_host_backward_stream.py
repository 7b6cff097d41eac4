"""stream_block_grads (compiler/stream_block_grads.py): the backward through an inverted-bottleneck
block runs one expanded channel at a time in one INVERTED_BOTTLENECK_GRAD node.

Checked: the eval rule gives the unfused ops' values (random toy shapes and schemes, two steps of
the reference training evaluation, loss bits and trained tensors identical); the C kernel is
bit-exact with the eval rule (whole and split expansion weights, 1 to 4 channels per pass); the generated C with and
without the pass gives identical loss bits and trained weights (toy, MbV2-w0.35 with its
published scheme), and the planned arena is what the run touches; the pass lowers the peak
where the backward sets it."""

from __future__ import annotations

import ctypes
import dataclasses

import numpy as np
import pytest
from conftest import require_tool, zoo_path_or_skip
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from runtime_harness.rt import ptr, runtime
from test_host_codegen import _check_project, _project

import microtrain.compiler  # noqa: F401
from microtrain.codegen.driver_files import write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.stream_block_grads import with_per_pass
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.interp.training import ALL_EVAL_RULES, run_training_graph
from microtrain.ir.ops import Op
from microtrain.runtime import cbind, twins
from microtrain.scheme import make_scheme
from microtrain.targets import host

GRAD = Op.INVERTED_BOTTLENECK_GRAD
LR = np.float32(0.05)
KERNEL_LR = np.float32(20.0)  # large, so that the kernel test's single update changes weights
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)  # a failing example is reported as drawn


def _fused_nodes(step):
    return [n for n in step.graph.nodes if n.op == GRAD]


def _toy_case(seed: int, size: int, expand: int, stride: int, kernel_ratio: float, bias_only: bool):
    """A two-block toy net (expansion >= 2: both blocks have pointwise1) and a scheme whose gradient
    flows through both blocks."""
    graph = toy_mbnet(seed, size=size, classes=4, blocks=((expand, 8, stride), (expand + 1, 8, 1)))
    names = [n.name for n in graph.weighted_nodes()]
    weights = {"classifier": 1.0}
    if not bias_only:
        weights["blocks.0.pointwise1"] = kernel_ratio
        weights["blocks.1.pointwise1"] = 1.0
    return graph, make_scheme(graph, names[1:], weights)


def _train_reference(step, graph, steps=2, seed=0):
    rng = np.random.default_rng(seed)
    trained = [t["name"] for t in step.graph.meta["training"]["trained"]]
    params: dict = {}
    losses = []
    for i in range(steps):
        x = rng.integers(-128, 128, graph.tensors[graph.inputs[0]].shape).astype(np.int8)
        feeds = {graph.inputs[0]: x, "label": np.array([i % 4], np.int32), "lr": np.array([LR], np.float32)}
        vals = run_training_graph(step.graph, feeds, params=params, step=i)
        params = {p: vals[p] for p in trained}
        losses.append(vals[step.graph.outputs[0]].tobytes())
    return losses, {k: v.tobytes() for k, v in params.items()}


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow], phases=NO_SHRINK)
@given(seed=st.integers(0, 1000), size=st.sampled_from([5, 6, 8]), expand=st.integers(2, 4),
       stride=st.sampled_from([1, 2]), ratio=st.sampled_from([0.25, 0.5, 1.0]), bias_only=st.booleans())
def test_eval_rule_equals_the_unfused_ops(seed, size, expand, stride, ratio, bias_only):
    graph, scheme = _toy_case(seed, size, expand, stride, ratio, bias_only)
    plain = compile_training(graph, scheme, CompileOptions(stream_grads=False))
    fused = compile_training(graph, scheme, CompileOptions(stream_grads=True))
    assert not _fused_nodes(plain) and len(_fused_nodes(fused)) == 2
    assert fused.plan.peak_bytes <= plain.plan.peak_bytes
    assert _train_reference(fused, graph) == _train_reference(plain, graph)


def test_pass_leaves_blocks_with_trained_depthwise_or_projection_weights():
    graph = toy_mbnet(1, size=8, classes=4)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[1:], {"blocks.1.depthwise": 1.0, "blocks.0.pointwise2": 0.5,
                                            "classifier": 1.0})
    step = compile_training(graph, scheme, CompileOptions(stream_grads=True))
    assert not _fused_nodes(step)  # both blocks read a weight that is updated: left unfused


@pytest.mark.zoo
def test_mbv2_backward_peak_drops():
    from microtrain.frontend.heads import new_head
    from microtrain.frontend.mcu_zoo import import_zoo_model
    from microtrain.sparse.presets import load_scheme

    graph = new_head(import_zoo_model(zoo_path_or_skip("mbv2-w0.35")), 10)
    scheme = load_scheme("mbv2-w0.35/99kb", graph)
    plain = compile_training(graph, scheme, CompileOptions(stream_input=True, stream_grads=False))
    fused = compile_training(graph, scheme, CompileOptions(stream_input=True, stream_grads=True))
    assert plain.plan.arena_bytes > 80 * 1024  # blocks.12's two 48 KB expanded gradients set the peak
    assert fused.plan.arena_bytes < 45 * 1024
    assert len(_fused_nodes(fused)) >= 8
    # now a streamed block backward does (blocks.12, 44.3 KB), just above the forward's widest point
    # (fused block 1 at 41.0 KB, its output written over block 0's: plan_memory's lagged in-place)
    at = fused.plan.peak_breakdown()["at_step"]
    assert fused.graph.nodes[at].op == Op.INVERTED_BOTTLENECK_GRAD


# --- the C kernel against the eval rule ----------------------------------------------------

def _values_before(step, graph, node_name, seed=0):
    """Every value right before node ``node_name`` runs, and every value after the whole step."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, graph.tensors[graph.inputs[0]].shape).astype(np.int8)
    g = step.graph
    values = {n: t.data for n, t in g.tensors.items() if t.is_const}
    values.update({g.inputs[0]: x, "label": np.array([1], np.int32), "lr": np.array([KERNEL_LR], np.float32),
                   "__step__": np.asarray(3)})
    before = None
    for node in g.nodes:
        if node.name == node_name:
            before = {k: np.array(v, copy=True) for k, v in values.items()}
        for name, arr in zip(node.outputs, ALL_EVAL_RULES[node.op](node, g, values), strict=True):
            values[name] = arr
    return before, values


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _run_kernel(lib, step, node, before, split: bool):
    g = step.graph
    p = twins.inverted_bottleneck_grad_params(node, g)
    s = cbind.InvertedBottleneckGradParams(cbind.ConvParams(**p["depthwise"]), p["project_out_c"], p["expand_in_c"],
                                           p["input_zero_point"], p["input_scale"], p["channels_per_pass"])
    assert lib.mt_inverted_bottleneck_grad_get_buffer_size(ctypes.byref(s)) == node.attrs["scratch_bytes"]
    gname, w_p, m_d, w_d, m_e, w_e = node.inputs[:6]
    scales = {w: _f32(g.tensors[w].quant.scales()) for w in (w_p, w_d, w_e)}
    outs = node.attrs["outputs"]
    c, i_c = g.tensors[w_e].shape[0], g.tensors[w_e].shape[3]
    h, w = node.attrs["input_shape"][1:3]
    keep: list = []
    res = {}
    gi = np.full((h * w * i_c,), 7.0, np.float32) if outs["grad_input"] else None
    bd = np.full(c, 7.0, np.float32) if outs["depthwise_bias_grad"] else None
    be = np.full(c, 7.0, np.float32) if outs["expand_bias_grad"] else None
    weights = np.ascontiguousarray(before[w_e]).copy()
    upd, x, rows, whole = None, None, None, ptr(weights)
    if outs["grad_weight"]:
        kept = list(node.attrs["channels"])
        upd_node = next(n for n in g.nodes if n.op == Op.UPDATE_WEIGHT and n.inputs[1] == outs["grad_weight"])
        factor = _f32(upd_node.attrs["factors"])
        index = np.asarray(kept, np.int32)
        row = np.zeros(i_c, np.float32)
        storage = weights.reshape(c, -1)[kept].copy() if split else weights
        keep += [factor, index, row, storage]
        u = cbind.UpdateParams(float(KERNEL_LR), twins.ROUNDING_MODES[upd_node.attrs.get("rounding", "nearest")],
                               int(upd_node.attrs.get("seed", 0)), 3, int(upd_node.attrs["tensor_id"]))
        upd = cbind.ExpandUpdate(ptr(storage), int(split), ptr(factor), ptr(index), len(kept), u, ptr(row))
        x = np.ascontiguousarray(before[node.inputs[6]])
        res["storage"] = storage
    if split:  # row c from the kept rows (RAM) or the frozen rows, like the generated row table
        flat = weights.reshape(c, -1)
        where = {k: res["storage"][j] for j, k in enumerate(node.attrs["channels"])} if upd else {}
        table = (ctypes.POINTER(ctypes.c_int8) * c)(*[ptr(where.get(k, flat[k])) for k in range(c)])
        rows, whole = table, None
    scratch = np.full(node.attrs["scratch_bytes"] // 4, 5.0, np.float32)
    st_ = lib.mt_inverted_bottleneck_grad_f32(
        ctypes.byref(s), ptr(_f32(before[gname])), ptr(before[w_p]), ptr(scales[w_p]), ptr(before[m_d]),
        ptr(before[w_d]), ptr(scales[w_d]), ptr(before[m_e]), whole, rows, ptr(scales[w_e]),
        ptr(x) if x is not None else None, ctypes.byref(upd) if upd is not None else None,
        ptr(gi) if gi is not None else None, ptr(bd) if bd is not None else None,
        ptr(be) if be is not None else None, ptr(scratch))
    assert st_ == twins.MT_OK
    res.update(grad_input=gi, depthwise_bias_grad=bd, expand_bias_grad=be, weights=weights)
    return res


def _assert_bits(got, ref, what):
    got, ref = np.asarray(got).reshape(-1), np.asarray(ref).reshape(-1)
    bad = np.flatnonzero(got.view(np.uint32 if got.dtype == np.float32 else got.dtype)
                         != ref.view(np.uint32 if ref.dtype == np.float32 else ref.dtype))
    assert not bad.size, f"{what}: {bad.size} of {got.size} differ, first at {bad[0]}: {got[bad[0]]} vs {ref[bad[0]]}"


@pytest.mark.host_c
@settings(max_examples=8, deadline=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1000), size=st.sampled_from([4, 6, 7]), expand=st.integers(2, 4),
       stride=st.sampled_from([1, 2]), ratio=st.sampled_from([0.25, 0.5, 1.0]), bias_only=st.booleans(),
       split=st.booleans(), per_pass=st.integers(1, 4))
def test_c_kernel_bit_exact_with_the_eval_rule(tmp_path_factory, seed, size, expand, stride, ratio, bias_only, split,
                                               per_pass):
    lib = runtime(tmp_path_factory)
    graph, scheme = _toy_case(seed, size, expand, stride, ratio, bias_only)
    step = compile_training(graph, scheme, CompileOptions(stream_grads=True))
    for name in [n.name for n in _fused_nodes(step)]:  # any channels per pass gives the same values
        step = dataclasses.replace(step, graph=with_per_pass(step.graph, name, per_pass))
    for node in _fused_nodes(step):
        assert node.attrs["per_pass"] == per_pass
        before, after = _values_before(step, graph, node.name, seed)
        got = _run_kernel(lib, step, node, before, split)
        ref = ALL_EVAL_RULES[GRAD](node, step.graph, before)
        outs = node.attrs["outputs"]
        present = [r for r in ("grad_weight", "grad_input", "depthwise_bias_grad", "expand_bias_grad") if outs[r]]
        for role, arr in zip(present, ref, strict=False):
            if role != "grad_weight":
                _assert_bits(got[role], arr, f"{node.name} {role}")
        w_e = node.inputs[5]
        if outs["grad_weight"]:  # the weights after the (separate) UPDATE_WEIGHT node of the reference
            kept = list(node.attrs["channels"])
            want = after[w_e].reshape(after[w_e].shape[0], -1)[kept] if split else after[w_e]
            _assert_bits(got["storage"], want, f"{node.name} updated {w_e}")
            assert not np.array_equal(after[w_e], before[w_e]) or bias_only
        else:
            _assert_bits(got["weights"], before[w_e], f"{node.name} {w_e} untouched")


# --- generated C, with and without the pass -------------------------------------------------

def _run_project(tmp_path, graph, scheme, options, steps, n, qemu=False):
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (n,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
    y = rng.integers(0, graph.tensors[graph.outputs[0]].shape[1], n).astype(np.int32)
    step = compile_training(graph, scheme, options)
    tag = f"{options.stream_grads}_{options.stream_input}_{qemu}"
    out = generate_project(step, graph, tmp_path / f"proj_{tag}")
    work = write_driver_files(tmp_path / f"w_{tag}", x, y, steps=steps, lr=LR, x_test=x, y_test=y, eval_count=n)
    if qemu:
        from microtrain.targets import cortex_m7
        r = cortex_m7.run(out, work)
    else:
        r = host.run(out, work, exe=host.build(out))
    return step, out, (r.loss_bits, r.eval_correct, r.weights_path.read_bytes())


@pytest.mark.host_c
def test_toy_generated_c_identical_with_and_without_the_pass(tmp_path):
    require_tool("gcc", "gcc")
    graph, scheme = _toy_case(3, 8, 3, 2, 0.5, False)
    s0, _, plain = _run_project(tmp_path, graph, scheme, CompileOptions(stream_grads=False), steps=6, n=3)
    s1, out, fused = _run_project(tmp_path, graph, scheme, CompileOptions(stream_grads=True), steps=6, n=3)
    assert len(_fused_nodes(s1)) == 2 and not _fused_nodes(s0)
    assert len(plain[0]) == 6 and len(set(plain[0])) > 1
    assert fused == plain
    assert "mt_inverted_bottleneck_grad_f32(" in (out / "src" / "mt_model.c").read_text()
    assert s1.plan.arena_bytes < s0.plan.arena_bytes


@pytest.mark.host_c
def test_toy_planned_arena_is_what_the_run_touches(tmp_path_factory, tmp_path):
    graph, scheme = _toy_case(5, 8, 2, 1, 0.25, False)
    step, out, exe = _project(tmp_path_factory, graph, scheme, CompileOptions(stream_grads=True), name="stream_grads")
    assert len(_fused_nodes(step)) == 2
    _check_project(tmp_path, graph, step, out, exe, steps=6, n=4)  # also: arena high-water == plan


@pytest.mark.host_c
@pytest.mark.zoo
@pytest.mark.slow
def test_mbv2_generated_c_identical_with_and_without_the_pass(tmp_path):
    require_tool("gcc", "gcc")
    from microtrain.frontend.heads import new_head
    from microtrain.frontend.mcu_zoo import import_zoo_model
    from microtrain.sparse.presets import load_scheme

    graph = new_head(import_zoo_model(zoo_path_or_skip("mbv2-w0.35")), 10)
    scheme = load_scheme("mbv2-w0.35/99kb", graph)
    _, _, plain = _run_project(tmp_path, graph, scheme, CompileOptions(stream_input=True, stream_grads=False),
                               steps=2, n=2)
    s1, _, fused = _run_project(tmp_path, graph, scheme, CompileOptions(stream_input=True, stream_grads=True),
                                steps=2, n=2)
    assert len(_fused_nodes(s1)) >= 8
    assert fused == plain and len(plain[0]) == 2
