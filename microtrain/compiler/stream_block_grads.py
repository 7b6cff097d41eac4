"""Pass: the backward through an inverted-bottleneck block runs one expanded channel at a time.

After ``reorder_updates`` (this pass runs last, see below) the backward of a block expand 1x1
(e) -> depthwise (d) -> project 1x1 (p) is, from the projection's masked output gradient ``g``:

    CONV2D_GRAD_INPUT(p) -> MASK_GRAD(mask d) [-> BIAS_GRAD(d)] -> CONV2D_GRAD_INPUT(d)
    -> MASK_GRAD(mask e) [-> BIAS_GRAD(e)] [-> CONV2D_GRAD_INPUT(e)] [-> CONV2D_GRAD_WEIGHT(e), chunk 1]

and its widest point holds two whole expanded gradients (MbV2-w0.35 block 12: 8x8x192 fp32,
48 KB each). The depthwise conv is per channel, so all of it can run channel by channel:
column c of the projection's input gradient, masked, is one plane; its depthwise input
gradient, masked, another; from that plane come bias-gradient entry c, expansion weight
gradient row c (applied at once) and channel c's share of the block input's gradient.
These nodes become one INVERTED_BOTTLENECK_GRAD node (``ir/block_grads.py`` defines it
by them; kernel ``mt_inverted_bottleneck_grad_f32``, bit-exact with them) that holds two
planes instead of the expanded tensors.

Where: every block whose backward has that shape, with the projection's and depthwise
weights frozen (the fused node reads them; their updates would have to wait for it) and
any expansion weight gradient reordered per channel. The expansion weights are read for
the input gradient before row c is updated, which is what the unfused order does (the
input gradient reads the old weights, then the update runs). The bias updates of d and e
move right after the fused node (nothing in between reads those biases). The fused node
takes the place of the last node it replaces, so every input it reads already exists.

The kernel runs 4 expanded channels per pass (4 planes of each kind, so that the two 1x1
stages keep 4 running sums in registers as the pointwise kernels do) wherever that does not
raise the planned peak, else 1 (same results either way). If the rewrite would raise the
planned peak, the graph is returned unchanged. The pass runs last, so that these choices see
the final forward (fused frozen blocks, bands, a streamed input).
"""

from __future__ import annotations

import dataclasses

from microtrain.compiler.plan_memory import plan_memory
from microtrain.ir.block_grads import BLOCK_GRAD, OUTPUT_ROLES
from microtrain.ir.buffer_sizes import inverted_bottleneck_grad_get_buffer_size
from microtrain.ir.conv_kinds import is_depthwise, is_pointwise
from microtrain.ir.fused_blocks import SCRATCH_QUANT
from microtrain.ir.graph import Graph, Node, Tensor
from microtrain.ir.ops import UPDATE_OPS, Op
from microtrain.ir.verify import verify_graph


class _Index:
    def __init__(self, g: Graph) -> None:
        self.readers: dict[str, list[Node]] = {}
        self.producer: dict[str, Node] = {}
        for n in g.nodes:
            for t in n.inputs:
                self.readers.setdefault(t, []).append(n)
            for t in n.outputs:
                self.producer[t] = n
        self.by_layer = {(n.op, n.attrs["layer"]): n for n in g.nodes if "layer" in n.attrs}
        self.updated = {n.inputs[0] for n in g.nodes if n.op in UPDATE_OPS}

    def only_reader(self, t: str) -> Node | None:
        r = self.readers.get(t, [])
        return r[0] if len(r) == 1 else None

    def mask_of(self, n: Node | None, y: str) -> bool:
        """n is a MASK_GRAD whose mask is the clamp mask of forward tensor y. An integer error
        (``error_bits``) needs the whole tensor for its scale, so it is never streamed."""
        if n is None or n.op != Op.MASK_GRAD or n.attrs.get("error_bits"):
            return False
        m = self.producer.get(n.inputs[1])
        return m is not None and m.op == Op.CLAMP_MASK and m.inputs[0] == y


def _match(d: Node, g: Graph, ix: _Index) -> tuple[dict, list[Node], list[Node]] | None:
    """(roles, absorbed backward nodes, updates to move after the fused node) of block d, or None."""
    e = ix.producer.get(d.inputs[0])
    p = next((n for n in ix.readers.get(d.outputs[0], []) if n.op == Op.CONV2D and is_pointwise(n, g)), None)
    if e is None or p is None or not is_pointwise(e, g):
        return None
    if p.inputs[1] in ix.updated or d.inputs[1] in ix.updated:
        return None  # the fused node reads them: their updates would have to wait for it
    gi_p = ix.by_layer.get((Op.CONV2D_GRAD_INPUT, p.name))
    if gi_p is None:
        return None
    mg_d = ix.only_reader(gi_p.outputs[0])
    if not ix.mask_of(mg_d, d.outputs[0]):
        return None
    gi_d = ix.by_layer.get((Op.CONV2D_GRAD_INPUT, d.name))
    bg_d = ix.by_layer.get((Op.BIAS_GRAD, d.name))
    if gi_d is None or {n.name for n in ix.readers[mg_d.outputs[0]]} - {gi_d.name, getattr(bg_d, "name", None)}:
        return None  # e.g. a depthwise weight gradient reads the masked plane
    mg_e = ix.only_reader(gi_d.outputs[0])
    if not ix.mask_of(mg_e, e.outputs[0]):
        return None
    gi_e = ix.by_layer.get((Op.CONV2D_GRAD_INPUT, e.name))
    bg_e = ix.by_layer.get((Op.BIAS_GRAD, e.name))
    gw_e = ix.by_layer.get((Op.CONV2D_GRAD_WEIGHT, e.name))
    tail = [n for n in (bg_e, gi_e, gw_e) if n is not None]
    if {n.name for n in ix.readers[mg_e.outputs[0]]} - {n.name for n in tail}:
        return None
    if gw_e is not None and (gw_e.attrs.get("chunk") != 1 or gw_e.inputs[1] != e.inputs[0]):
        return None  # the whole gradient would be held (per_channel off) or the input is sliced
    moved = []
    for grad in (bg_d, bg_e, gw_e):
        if grad is None:
            continue
        upd = ix.only_reader(grad.outputs[0])
        if upd is None or upd.op not in UPDATE_OPS:
            return None
        moved.append(upd)
    roles = {"e": e, "d": d, "p": p, "g": gi_p.inputs[0], "mask_d": mg_d.inputs[1], "mask_e": mg_e.inputs[1],
             "grad_weight": gw_e, "grad_input": gi_e, "depthwise_bias_grad": bg_d, "expand_bias_grad": bg_e}
    absorbed = [gi_p, mg_d, *([bg_d] if bg_d else []), gi_d, mg_e, *tail]
    return roles, absorbed, moved


PER_PASS = 4
"""Expanded channels per pass by default (the kernel's register-blocked case)."""


def _scratch_size(node: Node, g: Graph, per_pass: int) -> int:
    d, e = g.node(node.attrs["layers"]["depthwise"]), g.node(node.attrs["layers"]["expand"])
    dx, dy = g.tensors[d.inputs[0]], g.tensors[d.outputs[0]]
    return inverted_bottleneck_grad_get_buffer_size(dx.shape[1], dx.shape[2], dy.shape[1], dy.shape[2], per_pass,
                                                    g.tensors[e.inputs[0]].shape[3])


def _fused(roles: dict, absorbed: list[Node], g: Graph) -> tuple[Node, Tensor]:
    e, d, p = roles["e"], roles["d"], roles["p"]
    outs = {r: (roles[r].outputs[0] if roles[r] is not None else None) for r in OUTPUT_ROLES}
    dx = g.tensors[d.inputs[0]]
    name = f"bwd:block[{e.name}..{p.name}]"
    scratch = f"{name}.scratch"
    attrs: dict = {"sub": [{"name": n.name, "op": n.op.value, "inputs": list(n.inputs), "outputs": list(n.outputs),
                            "attrs": dict(n.attrs)} for n in absorbed],
                   "layers": {"expand": e.name, "depthwise": d.name, "project": p.name},
                   "outputs": outs, "input_shape": tuple(dx.shape), "per_pass": PER_PASS, "scratch_bytes": 0}
    inputs = [roles["g"], p.inputs[1], roles["mask_d"], d.inputs[1], roles["mask_e"], e.inputs[1]]
    if roles["grad_weight"] is not None:
        inputs.append(e.inputs[0])
        attrs["chunk"] = 1
        attrs["channels"] = tuple(roles["grad_weight"].attrs["channels"])
    outputs = tuple(o for o in outs.values() if o is not None) + (scratch,)
    node = Node(name, BLOCK_GRAD, tuple(inputs), outputs, attrs)
    size = _scratch_size(node, g, PER_PASS)
    node = dataclasses.replace(node, attrs={**attrs, "scratch_bytes": size})
    return node, Tensor(scratch, (size,), "int8", SCRATCH_QUANT)


def _rewrite(graph: Graph) -> tuple[Graph, list[str]]:
    ix = _Index(graph)
    nodes = list(graph.nodes)
    tensors = dict(graph.tensors)
    fused: list[str] = []
    for d in [n for n in graph.nodes if is_depthwise(n, graph)]:
        found = _match(d, graph, ix)
        if found is None:
            continue
        roles, absorbed, moved = found
        pos = {n.name: i for i, n in enumerate(nodes)}
        first, last = min(pos[n.name] for n in absorbed), max(pos[n.name] for n in absorbed)
        inner = {o for n in absorbed for o in n.outputs}
        skip = {n.name for n in absorbed} | {n.name for n in moved}
        between = [n for n in nodes[first:last] if n.name not in skip]
        if any(set(n.inputs) & inner for n in between):
            continue  # something between reads a gradient the fused node would produce later
        node, scratch = _fused(roles, absorbed, graph)
        after = [n for n in moved if pos[n.name] < last]
        rebuilt = nodes[:first] + between + [node] + after
        rebuilt += [n for n in nodes[last + 1:] if n.name not in {m.name for m in after}]
        nodes = rebuilt
        tensors[scratch.name] = scratch
        kept = set(node.outputs)
        for t in inner - kept:
            tensors.pop(t, None)
        fused.append(node.name)
    return graph.replace(tensors=tensors, nodes=tuple(nodes)), fused


def with_per_pass(g: Graph, name: str, per_pass: int) -> Graph:
    """The graph with fused node ``name`` running ``per_pass`` expanded channels per pass (1 to 4)."""
    nodes = list(g.nodes)
    i = next(k for k, n in enumerate(nodes) if n.name == name)
    size = _scratch_size(nodes[i], g, per_pass)
    nodes[i] = dataclasses.replace(nodes[i], attrs={**nodes[i].attrs, "per_pass": per_pass, "scratch_bytes": size})
    scratch = nodes[i].outputs[-1]
    tensors = {**g.tensors, scratch: dataclasses.replace(g.tensors[scratch], shape=(size,))}
    return g.replace(nodes=tuple(nodes), tensors=tensors)


def stream_block_grads(graph: Graph) -> Graph:
    """Fuse the backward of every eligible inverted-bottleneck block (unchanged if that raises the peak)."""
    new, fused = _rewrite(graph)
    if not fused:
        return graph
    peak = plan_memory(verify_graph(new)).peak_bytes
    single = new
    for name in fused:
        single = with_per_pass(single, name, 1)
    low = plan_memory(single).peak_bytes
    if low < peak:  # four planes set the peak somewhere: one channel per pass, four wherever that costs nothing
        new, peak = single, low
        for name in fused:
            trial = with_per_pass(new, name, PER_PASS)
            if plan_memory(trial).peak_bytes <= peak:
                new = trial
    if peak > plan_memory(graph).peak_bytes:
        return graph
    return verify_graph(new)
