"""INVERTED_BOTTLENECK_GRAD: the fused backward of one inverted-bottleneck block, and its shape rule.

``compiler/stream_block_grads.py`` replaces the backward nodes of a block (expand 1x1 ->
depthwise -> project 1x1) that run from the projection's masked output gradient ``g`` to the
block input's gradient by one node whose attrs keep every original node. Its meaning is
exactly running those nodes in their order (``sub_nodes``), so its eval rule
(``interp/training.py``) reuses the training interpreter's rules (same float32 arithmetic,
same summation order) and the C kernel ``mt_inverted_bottleneck_grad_f32`` (which runs one
expanded channel at a time and never holds a whole expanded gradient) is tested bit-exact
against it.

Inputs:  (g f32 [1,OH,OW,O], w_project, mask_depthwise, w_depthwise, mask_expand, w_expand[, x])
         ``x`` (the saved block input) only when the expansion weights are trained.
Outputs: ([grad_weight], [grad_input], [depthwise_bias_grad], [expand_bias_grad], scratch), the
         present ones named in attrs ``outputs`` (role -> tensor name or None). grad_weight is the
         expansion weight gradient [K,1,1,C] of the kept channels; the node carries ``chunk: 1``
         like a reordered CONV2D_GRAD_WEIGHT: the kernel computes and applies one kept row at a
         time (its UPDATE_WEIGHT node emits nothing) and the planner sizes the buffer for one row.
         ``scratch`` (int8 [scratch_bytes]) only exists so the planner places the kernel's two
         planes; its value is unspecified (zeros here).

Attrs: ``sub`` (the original nodes: name, op, inputs, outputs, attrs), ``layers`` (role ->
forward node name: expand, depthwise, project), ``outputs``, ``chunk`` and ``channels`` (with a
grad_weight: 1, the kept channels), ``input_shape`` (the depthwise input's), ``per_pass`` (expanded
channels per pass of the kernel, 1 to 4: the scratch holds that many planes of each kind),
``scratch_bytes``.
"""

from __future__ import annotations

from microtrain.ir.buffer_sizes import clamp_mask_get_buffer_size as mask_bytes
from microtrain.ir.check import OutSpec
from microtrain.ir.check import expect as _expect
from microtrain.ir.graph import Node, Tensor
from microtrain.ir.ops import Op

BLOCK_GRAD = Op.INVERTED_BOTTLENECK_GRAD
OUTPUT_ROLES = ("grad_weight", "grad_input", "depthwise_bias_grad", "expand_bias_grad")
"""Order of the optional outputs; the scratch comes last."""


def sub_nodes(node: Node) -> list[Node]:
    """The original backward nodes of a fused node, in their order."""
    return [Node(s["name"], Op(s["op"]), tuple(s["inputs"]), tuple(s["outputs"]), dict(s["attrs"]))
            for s in node.attrs["sub"]]


def block_grad_shape(node: Node, ins: list[Tensor]) -> OutSpec:
    outs = node.attrs["outputs"]
    trained = outs.get("grad_weight") is not None
    _expect(len(ins) == 6 + trained, node, f"expects {6 + trained} inputs, has {len(ins)}")
    present = [r for r in OUTPUT_ROLES if outs.get(r) is not None]
    _expect(len(node.outputs) == len(present) + 1, node, f"expects {len(present) + 1} outputs")
    _expect(all(outs[r] == o for r, o in zip(present, node.outputs, strict=False)), node,
            "outputs do not match attrs outputs")
    g, w_p, m_d, w_d, m_e, w_e = ins[:6]
    _expect(g.dtype == "float32" and len(g.shape) == 4, node, "gradient must be float32 NHWC")
    for w in (w_p, w_d, w_e):
        _expect(w.dtype == "int8" and len(w.shape) == 4 and w.quant is not None, node, f"{w.name!r} must be int8 OHWI")
    c = w_d.shape[0]
    _expect(w_p.shape[:3] == (g.shape[3], 1, 1) and w_p.shape[3] == c, node, f"projection {w_p.shape} vs {g.shape}")
    _expect(w_d.shape[3] == 1 and w_e.shape[:3] == (c, 1, 1), node, f"depthwise {w_d.shape} / expansion {w_e.shape}")
    _, h, w, _ = node.attrs["input_shape"]
    _expect(m_d.dtype == "uint8" and m_d.shape == (mask_bytes(g.shape[1] * g.shape[2] * c),), node,
            "depthwise mask size")
    _expect(m_e.dtype == "uint8" and m_e.shape == (mask_bytes(h * w * c),), node, "expansion mask size")
    spec: list = []
    if trained:
        x = ins[6]
        _expect(x.dtype == "int8" and x.shape == (1, h, w, w_e.shape[3]), node, f"saved input {x.name!r} shape")
        _expect(node.attrs.get("chunk") == 1, node, "the expansion weight gradient is applied row by row (chunk 1)")
        spec.append(((len(node.attrs["channels"]), 1, 1, w_e.shape[3]), "float32"))
    if outs.get("grad_input") is not None:
        spec.append(((1, h, w, w_e.shape[3]), "float32"))
    spec += [((c,), "float32")] * sum(outs.get(r) is not None for r in OUTPUT_ROLES[2:])
    spec.append(((int(node.attrs["scratch_bytes"]),), "int8"))
    return spec
