"""The verifier: every kind of broken graph raises IRError naming the node and op.

Each case starts from one valid graph (conv -> add residual -> pool -> flatten -> fc ->
dequantize -> softmax cross-entropy) and breaks one thing.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from microtrain.ir import Graph, GraphBuilder, IRError, Op, QParams, Tensor, verify_graph
from microtrain.ir.verify import SHAPE_RULES


def _act(name, shape, s=0.05, z=-3):
    return Tensor(name, tuple(shape), "int8", QParams.per_tensor(s, z))


def base_graph() -> Graph:
    rng = np.random.default_rng(0)
    gb = GraphBuilder()
    gb.add_input(_act("x", (1, 6, 6, 4)))
    w = rng.integers(-127, 128, size=(4, 3, 3, 4)).astype(np.int8)
    gb.add_tensor(Tensor("w", w.shape, "int8", QParams.per_channel([0.01, 0.02, 0.03, 0.04]), w))
    gb.add_tensor(Tensor("b", (4,), "int32", None, np.arange(4, dtype=np.int32)))
    gb.add_tensor(_act("y", (1, 6, 6, 4), 0.1, -128))
    gb.add_node("conv", Op.CONV2D, ["x", "w", "b"], ["y"], stride=(1, 1), padding=(1, 1, 1, 1), groups=1,
                act_min=-128, act_max=127)
    gb.add_tensor(_act("r", (1, 6, 6, 4), 0.12, 5))
    gb.add_node("res", Op.ADD, ["x", "y"], ["r"])
    gb.add_tensor(_act("p", (1, 1, 1, 4), 0.1, 0))
    gb.add_node("pool", Op.GLOBAL_AVG_POOL, ["r"], ["p"])
    gb.add_tensor(_act("f", (1, 4), 0.1, 0))
    gb.add_node("flatten", Op.RESHAPE, ["p"], ["f"], shape=(1, 4))
    fw = rng.integers(-127, 128, size=(3, 4)).astype(np.int8)
    gb.add_tensor(Tensor("fw", (3, 4), "int8", QParams.per_channel([0.01] * 3), fw))
    gb.add_tensor(Tensor("fb", (3,), "int32", None, np.zeros(3, dtype=np.int32)))
    gb.add_tensor(_act("logits_q", (1, 3), 0.2, 0))
    gb.add_node("fc", Op.FULLY_CONNECTED, ["f", "fw", "fb"], ["logits_q"])
    gb.add_tensor(Tensor("logits", (1, 3), "float32"))
    gb.add_node("deq", Op.DEQUANTIZE, ["logits_q"], ["logits"])
    gb.add_input(Tensor("label", (1,), "int32"))
    gb.add_tensor(Tensor("loss", (1,), "float32"))
    gb.add_node("ce", Op.SOFTMAX_CROSS_ENTROPY, ["logits", "label"], ["loss"])
    return gb.build(["loss"])


def _with_tensor(g: Graph, t: Tensor) -> Graph:
    return g.replace(tensors={**g.tensors, t.name: t})


def _with_node(g: Graph, node_name: str, **changes) -> Graph:
    return g.replace(nodes=tuple(dataclasses.replace(n, **changes) if n.name == node_name else n for n in g.nodes))


def _with_attrs(g: Graph, name: str, **attrs) -> Graph:
    return _with_node(g, name, attrs={**g.node(name).attrs, **attrs})


def test_base_graph_is_valid():
    g = base_graph()
    assert verify_graph(g) is g


def _swap_first_two(g: Graph) -> Graph:
    nodes = list(g.nodes)
    nodes[0], nodes[1] = nodes[1], nodes[0]
    return g.replace(nodes=tuple(nodes))


def _drop_reshape_shape(g: Graph) -> Graph:
    return _with_node(g, "flatten", attrs={})


CASES = {
    # kind of error: (how to break the base graph, node, op, words the message must contain)
    "wrong input dtype": (lambda g: _with_tensor(g, Tensor("x", (1, 6, 6, 4), "float32")),
                          "conv", Op.CONV2D, ["'x'", "int8", "float32"]),
    "wrong output shape": (lambda g: _with_tensor(g, _act("y", (1, 5, 5, 4), 0.1, -128)),
                           "conv", Op.CONV2D, ["'y'", "[1, 5, 5, 4]", "[1, 6, 6, 4]"]),
    "wrong output dtype": (lambda g: _with_tensor(g, Tensor("p", (1, 1, 1, 4), "float32")),
                           "pool", Op.GLOBAL_AVG_POOL, ["'p'", "float32", "int8"]),
    "per-channel scale count": (lambda g: _with_tensor(g, dataclasses.replace(
        g.tensors["w"], quant=QParams.per_channel([0.01, 0.02, 0.03]))), "conv", Op.CONV2D, ["'w'", "3 scales"]),
    "per-tensor weight": (lambda g: _with_tensor(g, dataclasses.replace(
        g.tensors["fw"], quant=QParams.per_tensor(0.01, 0))), "fc", Op.FULLY_CONNECTED, ["'fw'", "per-channel"]),
    "bias dtype": (lambda g: _with_tensor(g, Tensor("b", (4,), "float32", None, np.zeros(4, np.float32))),
                   "conv", Op.CONV2D, ["bias", "'b'", "int32", "float32"]),
    "bias shape": (lambda g: _with_tensor(g, Tensor("fb", (4,), "int32", None, np.zeros(4, np.int32))),
                   "fc", Op.FULLY_CONNECTED, ["'fb'", "(3,)"]),
    "groups not dividing": (lambda g: _with_attrs(g, "conv", groups=3), "conv", Op.CONV2D, ["groups=3"]),
    "use before definition": (_swap_first_two, "res", Op.ADD, ["'y'", "before"]),
    "duplicate tensor definition": (lambda g: _with_node(g, "res", outputs=("y",)), "res", Op.ADD,
                                    ["'y'", "defined twice"]),
    "add operand shapes": (lambda g: _with_node(_with_tensor(g, _act("x2", (1, 3, 3, 4))).replace(
        inputs=("x", "label", "x2")), "res", inputs=("x", "x2")), "res", Op.ADD, ["shapes differ"]),
    "activation range": (lambda g: _with_attrs(g, "conv", act_min=10, act_max=5), "conv", Op.CONV2D,
                         ["[10, 5]"]),
    "reshape element count": (lambda g: _with_attrs(g, "flatten", shape=(1, 5)), "flatten", Op.RESHAPE,
                              ["(1, 5)"]),
    "reshape without shape": (_drop_reshape_shape, "flatten", Op.RESHAPE, ["attribute", "shape"]),
    "fc input width": (lambda g: _with_tensor(g, Tensor("fw", (3, 5), "int8", QParams.per_channel([0.01] * 3),
                                                        np.zeros((3, 5), np.int8))),
                       "fc", Op.FULLY_CONNECTED, ["'fw'", "4 inputs"]),
    "label dtype": (lambda g: _with_tensor(g, Tensor("label", (1,), "float32")), "ce", Op.SOFTMAX_CROSS_ENTROPY,
                    ["label", "int32"]),
    "wrong arity": (lambda g: _with_node(g, "pool", inputs=("r", "x")), "pool", Op.GLOBAL_AVG_POOL,
                    ["1 inputs", "has 2"]),
    "unknown input tensor": (lambda g: _with_node(g, "pool", inputs=("nope",)), "pool", Op.GLOBAL_AVG_POOL,
                             ["'nope'", "not a tensor"]),
    "data shape vs declared": (lambda g: _with_tensor(g, dataclasses.replace(g.tensors["b"], shape=(5,))),
                               "conv", Op.CONV2D, ["'b'", "data shape"]),
    "int8 without qparams": (lambda g: _with_tensor(g, Tensor("p", (1, 1, 1, 4), "int8")), "pool",
                             Op.GLOBAL_AVG_POOL, ["'p'", "quantization"]),
    "per-channel activation": (lambda g: _with_tensor(g, Tensor("y", (1, 6, 6, 4), "int8",
                                                                QParams.per_channel([0.1] * 4, axis=3))),
                               "conv", Op.CONV2D, ["'y'", "per-tensor"]),
    "non-positive scale": (lambda g: _with_tensor(g, _act("r", (1, 6, 6, 4), -0.1, 0)), "res", Op.ADD,
                           ["'r'", "positive"]),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_verifier_error_names_node_and_op(kind):
    breaker, node, op, words = CASES[kind]
    with pytest.raises(IRError) as info:
        verify_graph(breaker(base_graph()))
    msg = str(info.value)
    assert f"node {node!r} ({op.value})" in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_unknown_op_shape_rule(monkeypatch):
    monkeypatch.delitem(SHAPE_RULES, Op.ADD)
    with pytest.raises(IRError, match=r"node 'res' \(add\): op has no shape rule"):
        verify_graph(base_graph())


def test_graph_output_never_computed():
    g = base_graph()
    g = _with_tensor(g, Tensor("orphan", (1,), "float32")).replace(outputs=("loss", "orphan"))
    with pytest.raises(IRError, match="graph output 'orphan' is never computed"):
        verify_graph(g)


def test_duplicate_node_name():
    g = base_graph()
    g = _with_node(g, "pool", name="conv")
    with pytest.raises(IRError, match=r"node 'conv' \(global_avg_pool\): node name used twice"):
        verify_graph(g)


def test_tensor_registered_under_other_name():
    g = base_graph()
    g = g.replace(tensors={**g.tensors, "p": _act("q", (1, 1, 1, 4))})
    with pytest.raises(IRError, match="registered as 'p' is named 'q'"):
        verify_graph(g)


def test_in_place_output_is_allowed_only_when_marked():
    g = base_graph()
    same = _with_node(g, "res", outputs=("y",))
    same = _with_tensor(same, same.tensors["y"])
    with pytest.raises(IRError, match="defined twice"):
        verify_graph(same)
    # The same node marked in_place (the compiler's in-place update ops) is accepted, as long
    # as the types agree: requantizing into y's own quantization.
    ok = _with_attrs(same, "res", in_place=True).replace(outputs=("y",))
    ok = ok.replace(nodes=tuple(n for n in ok.nodes if n.name in ("conv", "res")))
    assert verify_graph(ok) is ok


def test_reshape_must_keep_its_input_quantization():
    from microtrain.ir import GraphBuilder, IRError, Op, QParams, Tensor, verify_graph

    gb = GraphBuilder()
    gb.add_input(Tensor("x", (1, 1, 1, 4), "int8", QParams.per_tensor(0.1, 3)))
    gb.add_tensor(Tensor("y", (1, 4), "int8", QParams.per_tensor(0.2, 3)))
    gb.add_node("flat", Op.RESHAPE, ["x"], ["y"], shape=(1, 4))
    with pytest.raises(IRError, match=r"node 'flat' \(reshape\).*keep the quantization"):
        verify_graph(gb.build(["y"]))
