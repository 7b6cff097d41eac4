"""FUSED_INVERTED_BOTTLENECK: the pass, the interpreter rule and the C kernel, bit-exact with
the unfused ops on seeded random blocks (expansion none / 1x1 / 3x3 stride 1-2 like a first
conv, depthwise kernel 3/5/7 with stride 1/2, residual on/off, zero points at the int8
extremes, clamp ranges, biases near saturation), plus the pass's refusal to touch blocks a
training step reads (trainable or back-propagated through)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from runtime_harness.rt import assert_equal_first, ptr, runtime

from microtrain.compiler import inplace
from microtrain.compiler.build_training_graph import forward_end
from microtrain.compiler.fuse_frozen_blocks import fuse_frozen_blocks
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.interp.reference import run_graph
from microtrain.interp.training import run_training_graph
from microtrain.ir import buffer_sizes
from microtrain.ir.fused_blocks import FUSED, block_subgraph
from microtrain.ir.graph import GraphBuilder, QParams, Tensor
from microtrain.ir.ops import Op
from microtrain.ir.verify import conv_output_hw, verify_graph
from microtrain.runtime import cbind, twins

ZERO_POINTS = (-128, 127, 0)


def _zp(rng) -> int:
    return int(rng.choice(ZERO_POINTS)) if rng.random() < 0.5 else int(rng.integers(-128, 128))


def _act(rng, z: int) -> dict:
    r = rng.random()
    if r < 0.4:
        return {}
    if r < 0.7:
        return {"act_min": z, "act_max": 127}  # ReLU folded into the clamp
    lo = int(rng.integers(-128, 20))
    return {"act_min": lo, "act_max": int(rng.integers(lo, 128))}


class _Block:
    def __init__(self, rng, x_shape) -> None:
        self.rng, self.b = rng, GraphBuilder()
        self.x = self.b.add_input(Tensor("x", x_shape, "int8", QParams.per_tensor(10 ** rng.uniform(-3, -1), _zp(rng))))

    def conv(self, name: str, x: str, out_c: int, k: int, stride: int, depthwise: bool, out: str | None = None) -> str:
        rng, x_t = self.rng, self.b.tensors[x]
        _, h, w, c = x_t.shape
        per_group = 1 if depthwise else c
        s_w = 10 ** rng.uniform(-4, -1.5, out_c)
        dot = k * k * per_group
        s_y = float(x_t.quant.s * np.median(s_w) * np.sqrt(dot) * 5400 / 50 * 10 ** rng.uniform(-1, 1))
        wq = rng.integers(-127, 128, (out_c, k, k, per_group)).astype(np.int8)
        lim = 2**31 - 1 if rng.random() < 0.1 else int(4 * np.sqrt(dot) * 5400)
        bq = rng.integers(-lim, lim, out_c, dtype=np.int64).astype(np.int32)
        self.b.add_tensor(Tensor(f"{name}.weight", wq.shape, "int8", QParams.per_channel(s_w), wq))
        self.b.add_tensor(Tensor(f"{name}.bias", (out_c,), "int32", None, bq))
        pad = k // 2
        oh, ow = conv_output_hw(h, w, k, k, (stride, stride), (pad,) * 4)
        z = _zp(rng)
        out = out or f"{name}.out"
        self.b.add_tensor(Tensor(out, (1, oh, ow, out_c), "int8", QParams.per_tensor(s_y, z)))
        self.b.add_node(name, Op.CONV2D, (x, f"{name}.weight", f"{name}.bias"), (out,), stride=(stride, stride),
                        padding=(pad,) * 4, groups=c if depthwise else 1, **_act(rng, z))
        return out


def random_block(rng, expand: str, k: int, stride: int, residual: bool, shortcut_first: bool = True):
    """A graph holding one block: [expand] -> depthwise k x k / stride -> 1x1 [-> ADD(x)]."""
    h, w = int(rng.integers(max(k, 4), 11)), int(rng.integers(3, 10))
    c_in = int(rng.integers(1, 9))
    blk = _Block(rng, (1, h, w, c_in))
    t = blk.x
    if expand == "1x1":
        t = blk.conv("b.pointwise1", t, int(rng.integers(2, 17)), 1, 1, False)
    elif expand == "3x3":  # a first conv (3x3, stride 2) feeding an expansion-free block
        t = blk.conv("first_conv", t, int(rng.integers(2, 12)), 3, int(rng.integers(1, 3)), False)
    t = blk.conv("b.depthwise", t, blk.b.tensors[t].shape[3], k, stride, True)
    c_out = c_in if residual else int(rng.integers(1, 9))
    p = blk.conv("b.pointwise2", t, c_out, 1, 1, False)
    outputs = (p,)
    if residual:
        x_t = blk.b.tensors[blk.x]
        blk.b.add_tensor(Tensor("b.residual.out", x_t.shape, "int8",
                                QParams.per_tensor(10 ** rng.uniform(-3, -1), _zp(rng))))
        operands = (blk.x, p) if shortcut_first else (p, blk.x)
        blk.b.add_node("b.residual", Op.ADD, operands, ("b.residual.out",), **_act(rng, 0))
        outputs = ("b.residual.out",)
    return verify_graph(blk.b.build(outputs))


CASES = [(e, k, s, r) for e in ("none", "1x1", "3x3") for k in (3, 5, 7) for s in (1, 2) for r in (False, True)
         if not (r and (s == 2 or e == "3x3"))]


def _fused(g):
    f = verify_graph(fuse_frozen_blocks(g))
    fused = [n for n in f.nodes if n.op == FUSED]
    assert len(fused) == 1 and len(f.nodes) == 1, [n.name for n in f.nodes]
    return f, fused[0]


@pytest.mark.parametrize("expand,k,stride,residual", CASES)
def test_fused_rule_equals_original_ops(expand, k, stride, residual):
    for seed in range(3):
        rng = np.random.default_rng([seed, k, stride, residual, len(expand)])
        g = random_block(rng, expand, k, stride, residual, shortcut_first=bool(seed % 2))
        f, node = _fused(g)
        x = rng.integers(-128, 128, g.tensors["x"].shape).astype(np.int8)
        want = run_graph(g, {"x": x})[g.outputs[0]]
        got = run_graph(f, {"x": x})[f.outputs[0]]
        np.testing.assert_array_equal(got, want)
        assert f.outputs == g.outputs
        # the definition rebuilds exactly the original nodes (names, ops, operands, attrs)
        sub = block_subgraph(node, f)
        assert [(n.name, n.op, n.inputs, dict(n.attrs)) for n in sub.nodes] == \
            [(n.name, n.op, n.inputs, dict(n.attrs)) for n in g.nodes]


def test_fused_shape_rule_rejects_a_broken_node():
    g = random_block(np.random.default_rng(1), "1x1", 3, 1, True)
    f, node = _fused(g)
    bad = dict(node.attrs, stages=[s for s in node.attrs["stages"] if s["role"] != "depthwise"])
    broken = f.replace(nodes=(type(node)(node.name, node.op, node.inputs, node.outputs, bad),))
    with pytest.raises(ValueError, match="not an inverted bottleneck"):
        verify_graph(broken)
    small = dict(node.attrs, scratch_bytes=node.attrs["scratch_bytes"] - 1)
    broken = f.replace(nodes=(type(node)(node.name, node.op, node.inputs, node.outputs, small),))
    with pytest.raises(ValueError, match="scratch_bytes"):
        verify_graph(broken)


# --- the C kernel ---------------------------------------------------------------------------

def _struct(p: dict, keep: list) -> cbind.InvertedBottleneckParams:
    s = cbind.InvertedBottleneckParams()
    s.has_expand, s.has_residual, s.shortcut_first = p["has_expand"], p["has_residual"], p["shortcut_first"]
    for role in ("expand", "depthwise", "project"):
        setattr(s, role, cbind.ConvParams(**p[role]))
        mult, shift = (np.ascontiguousarray(a, dtype=np.int32) for a in p[f"{role}_q"])
        keep += [mult, shift]
        setattr(s, f"{role}_q", cbind.PerChannelQuant(ptr(mult), ptr(shift)))
    s.add = cbind.AddParams(**p["add"])
    return s


def _run_c(lib, f, node, x: np.ndarray, inplace: bool = False) -> tuple[int, np.ndarray]:
    keep: list = []
    p = twins.inverted_bottleneck_params(node, f)
    s = _struct(p, keep)
    assert lib.mt_inverted_bottleneck_get_buffer_size(ctypes.byref(s)) == \
        buffer_sizes.inverted_bottleneck_get_buffer_size(p) == node.attrs["scratch_bytes"]
    consts = [np.ascontiguousarray(f.tensors[t].data) for t in node.inputs[1:]]
    if not p["has_expand"]:
        consts = [None, None, *consts]
    y_t = f.tensors[node.outputs[0]]
    xin = x.copy()
    y = xin if inplace else np.full(y_t.shape, 77, dtype=np.int8)
    assert not inplace or xin.nbytes >= y_t.nbytes
    scratch = np.full(node.attrs["scratch_bytes"], -3, dtype=np.int8)
    st = lib.mt_inverted_bottleneck_s8(ctypes.byref(s), ptr(xin), *(ptr(c) for c in consts), ptr(y), ptr(scratch))
    return st, (xin.reshape(-1)[:y_t.size].reshape(y_t.shape) if inplace else y)


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return runtime(tmp_path_factory)


@pytest.mark.host_c
@pytest.mark.parametrize("expand,k,stride,residual", CASES)
def test_c_kernel_bit_exact(rt, expand, k, stride, residual):
    for seed in range(3):
        rng = np.random.default_rng([seed, k, stride, residual, len(expand), 7])
        g = random_block(rng, expand, k, stride, residual, shortcut_first=bool(seed % 2))
        f, node = _fused(g)
        x = rng.integers(-128, 128, g.tensors["x"].shape).astype(np.int8)
        want = run_graph(g, {"x": x})[g.outputs[0]]
        st, got = _run_c(rt, f, node, x)
        assert st == twins.MT_OK
        assert_equal_first(got, want, f"{node.name} seed {seed}")
        p = twins.inverted_bottleneck_params(node, f)
        if inplace.inverted_bottleneck_inplace_ok(p):  # the output written over the input
            st, got = _run_c(rt, f, node, x, inplace=True)
            assert st == twins.MT_OK
            assert_equal_first(got, want, f"{node.name} in place, seed {seed}")
        elif g.tensors["x"].nbytes >= f.tensors[node.outputs[0]].nbytes:
            assert _run_c(rt, f, node, x, inplace=True)[0] == twins.MT_ERR_PARAM


@pytest.mark.host_c
def test_c_kernel_inplace_rule_matches_twin(rt):
    # residual blocks (stride 1, 1x1 expansion) are always safe in place; without an expansion
    # the depthwise reads the input row above the one it writes, refused by kernel and twin alike
    rng = np.random.default_rng(5)
    g = random_block(rng, "1x1", 3, 1, True)
    f, node = _fused(g)
    assert inplace.inverted_bottleneck_inplace_ok(twins.inverted_bottleneck_params(node, f))
    blk = _Block(rng, (1, 6, 5, 4))
    t = blk.conv("b.depthwise", blk.x, 4, 3, 1, True)
    g2 = verify_graph(blk.b.build((blk.conv("b.pointwise2", t, 4, 1, 1, False),)))
    node2 = fused_node_of(g2)
    assert not inplace.inverted_bottleneck_inplace_ok(twins.inverted_bottleneck_params(node2, g2))
    st, _ = _run_c(rt, g2, node2, np.zeros((1, 6, 5, 4), np.int8), inplace=True)
    assert st == twins.MT_ERR_PARAM
    # the zoo's first stage: image -> first_conv 3x3/2 -> depthwise -> projection, a smaller output
    # written over the image (each output row lands on input rows no later row reads)
    blk = _Block(rng, (1, 16, 16, 3))
    t = blk.conv("first_conv", blk.x, 8, 3, 2, False)
    t = blk.conv("b.depthwise", t, 8, 3, 1, True)
    g3 = verify_graph(blk.b.build((blk.conv("b.pointwise2", t, 4, 1, 1, False),)))
    f3, node3 = _fused(g3)
    assert inplace.inverted_bottleneck_inplace_ok(twins.inverted_bottleneck_params(node3, f3))
    x = rng.integers(-128, 128, (1, 16, 16, 3)).astype(np.int8)
    st, got = _run_c(rt, f3, node3, x, inplace=True)
    assert st == twins.MT_OK
    assert_equal_first(got, run_graph(g3, {"x": x})[g3.outputs[0]], "first stage in place")


def fused_node_of(g):
    from microtrain.compiler.fuse_frozen_blocks import fused_node
    node, scratch = fused_node(list(g.nodes), g)
    return node


# --- the pass on training graphs -------------------------------------------------------------

def test_pass_fuses_only_frozen_blocks_of_a_training_graph():
    from microtrain.compiler.pipeline import CompileOptions, compile_training
    from microtrain.scheme import make_scheme

    g = toy_mbnet(seed=0, size=16, blocks=((1, 8, 1), (3, 8, 2), (3, 8, 1), (3, 12, 1), (2, 12, 1)))
    layers = [n.name for n in g.weighted_nodes()]
    first = layers.index("blocks.3.depthwise")  # the earliest updated layer: a depthwise, mid-block
    scheme = make_scheme(g, bias_layers=layers[first:], weight_ratios={layers[first]: 0.5, layers[-1]: 1.0})
    plain = compile_training(g, scheme, CompileOptions(fuse_blocks=False))
    fused = compile_training(g, scheme, CompileOptions(fuse_blocks=True))
    fused_names = {s["name"] for n in fused.graph.nodes if n.op == FUSED for s in n.attrs["stages"]}
    # blocks 0-2 fused (block 0 has a residual, so first_conv's output is read twice and stays
    # apart); block 3 (trained from its depthwise on) and block 4 (gradient flows) not
    assert {n for n in layers[:first] if n != "first_conv" and not n.startswith("blocks.3.")} == \
        fused_names & set(layers)
    assert {"blocks.0.residual", "blocks.2.residual"} <= fused_names
    assert not any(n.startswith("blocks.3.") for n in fused_names)
    verify_graph(fused.graph)
    # the forward's live bytes drop; the toy model's overall peak is in its backward
    assert fused.plan.peak_bytes <= plain.plan.peak_bytes
    fwd = [forward_end(c.graph) for c in (plain, fused)]
    assert max(fused.plan.live_bytes()[:fwd[1] + 1]) < max(plain.plan.live_bytes()[:fwd[0] + 1])
    # one training step: same loss and same updated parameters, bit for bit
    x = np.random.default_rng(1).integers(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
    feeds = {g.inputs[0]: x, "label": np.array([3], np.int32), "lr": np.array([0.05], np.float32)}
    a = run_training_graph(plain.graph, feeds)
    b = run_training_graph(fused.graph, feeds)
    for name in plain.graph.outputs:
        np.testing.assert_array_equal(a[name], b[name])
    updates = [n for n in plain.graph.nodes if n.op in (Op.UPDATE_WEIGHT, Op.UPDATE_BIAS)]
    assert updates
    for upd in updates:
        np.testing.assert_array_equal(a[upd.outputs[0]], b[upd.outputs[0]])


def test_pass_on_inference_graph_fuses_every_block():
    g = toy_mbnet(seed=2, size=12, blocks=((1, 8, 1), (3, 8, 2), (3, 8, 1)))
    f = verify_graph(fuse_frozen_blocks(g))
    assert [n.op for n in f.nodes].count(FUSED) == 3
    assert not any(n.name.startswith("blocks.") for n in f.nodes if n.op != FUSED)
    x = np.random.default_rng(3).integers(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
    np.testing.assert_array_equal(run_graph(f, {g.inputs[0]: x})[f.outputs[0]],
                                  run_graph(g, {g.inputs[0]: x})[g.outputs[0]])


# --- generated C -----------------------------------------------------------------------------

@pytest.mark.host_c
def test_generated_c_with_fused_blocks_bit_exact(tmp_path):
    from conftest import require_tool

    from microtrain.codegen.driver_files import read_weights, write_driver_files
    from microtrain.codegen.generate_project import generate_project
    from microtrain.compiler.pipeline import CompileOptions, compile_training
    from microtrain.interp.reference import infer
    from microtrain.scheme import make_scheme
    from microtrain.targets import host

    require_tool("gcc", "gcc")
    g = toy_mbnet(seed=4, size=16, blocks=((1, 8, 1), (4, 8, 2), (3, 8, 1), (2, 12, 1)), classes=4)
    layers = [n.name for n in g.weighted_nodes()]
    scheme = make_scheme(g, layers[-4:], {"blocks.3.pointwise2": 1.0, "classifier": 1.0})
    step = compile_training(g, scheme, CompileOptions())
    assert [n.op for n in step.graph.nodes].count(FUSED) == 3
    out = generate_project(step, g, tmp_path / "proj")
    assert "mt_inverted_bottleneck_s8(" in (out / "src" / "mt_model.c").read_text()
    exe = host.build(out, defines=("MT_DEBUG_ARENA", "MT_DEBUG_LOGITS"))
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (6,) + g.tensors[g.inputs[0]].shape[1:]).astype(np.int8)
    y = rng.integers(0, 4, 6).astype(np.int32)
    work = write_driver_files(tmp_path / "infer", x, y, steps=0, lr=np.float32(0.05), x_test=x, y_test=y,
                              eval_count=len(y))
    res = host.run(out, work, exe=exe)
    logits = [list(map(int, line.split()[2:])) for line in res.stdout.splitlines() if line.startswith("logits")]
    assert logits == [infer(g, x[i][None])[0].tolist() for i in range(len(y))]
    # training steps: the C weights equal the reference evaluation of the fused training graph
    steps = 6
    work = write_driver_files(tmp_path / "train", x, y, steps=steps, lr=np.float32(0.05))
    res = host.run(out, work, exe=exe)
    params: dict = {}
    trained = [t["name"] for t in step.graph.meta["training"]["trained"]]
    for i in range(steps):
        feeds = {g.inputs[0]: x[i % len(y)][None], "label": np.array([y[i % len(y)]], np.int32),
                 "lr": np.array([0.05], np.float32)}
        vals = run_training_graph(step.graph, feeds, params=params, step=i)
        params = {p: vals[p] for p in trained}
    got = read_weights(out, res.weights_path)
    assert any(np.any(got[p] != g.tensors[p].data) for p in trained)
    for p in trained:
        np.testing.assert_array_equal(got[p], params[p], err_msg=p)
    assert res.arena_high_water <= step.plan.arena_bytes


def test_fused_graph_survives_save_and_load(tmp_path):
    from microtrain.ir import load_graph, save_graph

    g = toy_mbnet(seed=1, size=12)
    f = verify_graph(fuse_frozen_blocks(g))
    save_graph(f, tmp_path / "m.json")
    h = load_graph(tmp_path / "m.json")
    assert [n.op for n in h.nodes].count(FUSED) == [n.op for n in f.nodes].count(FUSED) >= 2
    x = np.random.default_rng(0).integers(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
    np.testing.assert_array_equal(run_graph(h, {g.inputs[0]: x})[h.outputs[0]],
                                  run_graph(g, {g.inputs[0]: x})[g.outputs[0]])


def test_loaded_fused_graph_runs_without_the_compiler(tmp_path):
    # importing the interpreter alone registers the fused op's rules (interp/__init__.py)
    import subprocess
    import sys

    from microtrain.ir import save_graph

    g = toy_mbnet(seed=3, size=8)
    save_graph(verify_graph(fuse_frozen_blocks(g)), tmp_path / "m.json")
    x = np.random.default_rng(0).integers(-128, 128, g.tensors[g.inputs[0]].shape).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np; from microtrain.ir import load_graph; "
            "from microtrain.interp.reference import run_graph; "
            f"g = load_graph({str(tmp_path / 'm.json')!r}); "
            "assert 'microtrain.compiler' not in sys.modules; "
            f"y = run_graph(g, {{g.inputs[0]: np.load({str(tmp_path / 'x.npy')!r})}})[g.outputs[0]]; "
            "print(' '.join(map(str, y.ravel().tolist())))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert list(map(int, out)) == run_graph(g, {g.inputs[0]: x})[g.outputs[0]].ravel().tolist()
