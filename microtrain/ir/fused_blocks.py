"""FUSED_INVERTED_BOTTLENECK: the fused frozen block as a graph of its original ops, and its shape rule.

``compiler/fuse_frozen_blocks.py`` replaces the nodes of a frozen inverted-bottleneck block
([expand CONV2D ->] depthwise CONV2D -> 1x1 projection CONV2D [-> residual ADD]) by one
node whose attrs keep every original node (name, attrs, output tensor name and its
quantization). ``block_subgraph(node, graph)`` rebuilds those ops as a small Graph; the
node's meaning is exactly running that graph. So its eval rule (``interp/reference.py``)
*is* the reference arithmetic (same int32 sums, same ``quant.requantize``), and the C
kernel ``mt_inverted_bottleneck_s8`` (which streams rows through a ring buffer) is tested
bit-exact against it.

Attrs of the fused node (JSON-able)::

    stages: [{"role": "expand"|"depthwise"|"project"|"residual", "name": original node name,
              "attrs": original attrs, "out": original output tensor name,
              "out_quant": [scale, zero_point]}, ...]   (execution order; expand/residual optional)
    shortcut_first: bool   the block input is the ADD's first operand
    scratch_bytes: int     ring buffer + one pixel of depthwise (and projection) output

Outputs: (y, scratch). ``scratch`` is an int8 [scratch_bytes] buffer that only exists so the
memory planner places the kernel's scratch; its value is unspecified (zeros here).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from microtrain.ir.buffer_sizes import inverted_bottleneck_get_buffer_size
from microtrain.ir.check import IRError, OutSpec, check_graph
from microtrain.ir.graph import Graph, Node, QParams, Tensor
from microtrain.ir.ops import Op
from microtrain.ir.shapes_forward import FORWARD_SHAPE_RULES

FUSED = Op.FUSED_INVERTED_BOTTLENECK
SCRATCH_QUANT = QParams.per_tensor(1.0, 0)
"""The scratch output is raw bytes; int8 tensors need QParams, these are never used."""


def stage(node: Node, role: str) -> Mapping | None:
    for s in node.attrs["stages"]:
        if s["role"] == role:
            return s
    return None


def _weighted_roles(node: Node) -> list[str]:
    return [s["role"] for s in node.attrs["stages"] if s["role"] != "residual"]


def block_subgraph(node: Node, graph: Graph, values: Mapping[str, np.ndarray] | None = None) -> Graph:
    """The original ops of a fused node as a Graph (input: the block input; output: y).

    Constants take their data from ``values`` when given (the interpreter's current
    parameters), else from ``graph``. Intermediate tensors get their recorded quantization.
    """
    x_name, y_name = node.inputs[0], node.outputs[0]
    tensors: dict[str, Tensor] = {x_name: graph.tensors[x_name]}
    nodes: list[Node] = []
    prev = x_name
    consts = list(node.inputs[1:])
    roles = _weighted_roles(node)
    if len(consts) != 2 * len(roles):
        raise IRError(f"node {node.name!r} ({node.op.value}): {len(consts)} constant inputs for stages {roles}")
    for k, role in enumerate(roles):
        s = stage(node, role)
        w, b = consts[2 * k], consts[2 * k + 1]
        for name in (w, b):
            t = graph.tensors[name]
            tensors[name] = t.with_data(values[name]) if values is not None and name in values else t
        out = s["out"]
        nodes.append(Node(s["name"], Op.CONV2D, (prev, w, b), (out,), dict(s["attrs"])))
        prev = out
    res = stage(node, "residual")
    if res is not None:
        operands = (x_name, prev) if node.attrs["shortcut_first"] else (prev, x_name)
        nodes.append(Node(res["name"], Op.ADD, operands, (res["out"],), dict(res["attrs"])))
    # intermediate tensors: shapes by the conv shape rule, quantization as recorded
    for n, s in zip(nodes, node.attrs["stages"], strict=True):
        out = n.outputs[0]
        if out == y_name:
            continue
        ((shape, dtype),) = _conv_shape(n, [tensors[i] for i in n.inputs])
        tensors[out] = Tensor(out, shape, dtype, QParams.per_tensor(*s["out_quant"]))
    if nodes[-1].outputs[0] != y_name:
        raise IRError(f"node {node.name!r} ({node.op.value}): the last stage must write the output {y_name!r}")
    tensors[y_name] = graph.tensors[y_name]
    return Graph(tensors, tuple(nodes), (x_name,), (y_name,))


def _conv_shape(n: Node, ins: list[Tensor]) -> OutSpec:
    return FORWARD_SHAPE_RULES[Op.CONV2D](n, ins)


def fused_shape(node: Node, ins: list[Tensor]) -> OutSpec:
    """Rebuild the block from the operands and verify it as a graph of its own."""
    roles = [s["role"] for s in node.attrs["stages"]]
    if roles not in (["depthwise", "project"], ["expand", "depthwise", "project"],
                     ["depthwise", "project", "residual"], ["expand", "depthwise", "project", "residual"]):
        raise IRError(f"node {node.name!r} ({node.op.value}): stages {roles} are not an inverted bottleneck")
    if len(node.outputs) != 2:
        raise IRError(f"node {node.name!r} ({node.op.value}): expects outputs (y, scratch), has {node.outputs}")
    y_name = node.outputs[0]
    x = ins[0]
    project = stage(node, "project")
    # y's quantization: recorded with the last stage; its shape: the projection's (= x's with a residual)
    y_probe = Tensor(y_name, (1, 1, 1, 1), "int8", QParams.per_tensor(*node.attrs["stages"][-1]["out_quant"]))
    g = Graph({**{t.name: t for t in ins}, y_name: y_probe}, (node,), (x.name,), (y_name,))
    sub = block_subgraph(node, g)
    pnode = sub.node(project["name"])
    if "residual" in roles:
        y_shape = sub.tensors[pnode.outputs[0]].shape
        if y_shape != x.shape:
            raise IRError(f"node {node.name!r} ({node.op.value}): residual operands differ: {x.shape} vs {y_shape}")
    else:
        ((y_shape, _),) = _conv_shape(pnode, [sub.tensors[i] for i in pnode.inputs])
    tensors = dict(sub.tensors)
    tensors[y_name] = Tensor(y_name, y_shape, "int8", y_probe.quant)
    check_graph(Graph(tensors, sub.nodes, sub.inputs, sub.outputs), FORWARD_SHAPE_RULES)
    full = Graph({**g.tensors, y_name: tensors[y_name]}, (node,), (x.name,), (y_name,))
    need = scratch_bytes(node, full)
    if int(node.attrs["scratch_bytes"]) != need:
        raise IRError(f"node {node.name!r} ({node.op.value}): scratch_bytes {node.attrs['scratch_bytes']} but the "
                      f"kernel needs {need} (mt_inverted_bottleneck_get_buffer_size)")
    return [(y_shape, "int8"), ((need,), "int8")]


def scratch_bytes(node: Node, graph: Graph) -> int:
    """The kernel's scratch for a fused node (mt_inverted_bottleneck_get_buffer_size of its convs)."""
    sub = block_subgraph(node, graph)

    def conv(role: str) -> dict:
        n = sub.node(stage(node, role)["name"])
        x, w, y = sub.tensors[n.inputs[0]], sub.tensors[n.inputs[1]], sub.tensors[n.outputs[0]]
        top, left, bottom, right = n.attrs.get("padding", (0, 0, 0, 0))
        _, sw = n.attrs.get("stride", (1, 1))
        return {"kernel_h": w.shape[1], "kernel_w": w.shape[2], "stride_w": int(sw), "in_h": x.shape[1],
                "in_w": x.shape[2], "in_c": x.shape[3], "out_w": y.shape[2], "out_c": y.shape[3],
                "pad_top": int(top), "pad_left": int(left), "pad_right": int(right)}

    has_expand = stage(node, "expand") is not None
    return inverted_bottleneck_get_buffer_size({
        "has_expand": int(has_expand), "has_residual": int(stage(node, "residual") is not None),
        "expand": conv("expand") if has_expand else None, "depthwise": conv("depthwise"), "project": conv("project")})
