"""Pass: fuse each frozen inverted-bottleneck block into one row-streamed node.

The early, high-resolution blocks of an MCU backbone hold the largest activations
(MbV2-w0.35 at 128x128: block 1's expansion is 64x64x48 int8, 192 KB), but when the scheme
updates only later layers nothing in the backward reads them. Such a block

    [expand CONV2D (groups 1, any kernel)] -> depthwise CONV2D -> 1x1 CONV2D [-> ADD(block input)]

becomes one FUSED_INVERTED_BOTTLENECK node (``ir/fused_blocks.py`` defines it by the original
ops, so results are bit-exact). Its kernel computes the expanded rows only as the depthwise
needs them, into a ring buffer of kernel_h rows, then one depthwise pixel, its projection
and the residual: the block's live memory drops from input + expanded + depthwise output
(+ output) to input + output + ring. The expansion may be any groups-1 conv, so the first
conv of a network followed by an expansion-free block fuses as well (first_conv feeds
blocks.0.depthwise in the MCU zoo models).

A block is fused only when it is frozen, checked on the graph itself: none of its weights
or biases is updated or read by any other node (a backward through the block would read
the weights), and none of its intermediate tensors is read outside the block or is a graph
output. On an inference graph every block qualifies.

The output gets its own buffer (FUSED_INVERTED_BOTTLENECK is not in
``inplace.INPLACE_RULES``), but when the input dies at the block and the kernel may write
the output over it (``inplace.inverted_bottleneck_inplace_ok``: a residual block, or a stride-2
block whose output row r lands on input rows no later row reads), the planner starts that
buffer at the input's offset (``Buffer.overwrites``). That removes the zoo models' forward
peak at block 1 (block 0's 64x64 output held whole next to block 1's output).
"""

from __future__ import annotations

from microtrain.ir.conv_kinds import is_depthwise, is_pointwise
from microtrain.ir.fused_blocks import FUSED, SCRATCH_QUANT, scratch_bytes
from microtrain.ir.graph import Graph, Node, Tensor
from microtrain.ir.ops import UPDATE_OPS, Op


def _stage(role: str, n: Node, g: Graph) -> dict:
    q = g.tensors[n.outputs[0]].quant
    return {"role": role, "name": n.name, "attrs": dict(n.attrs), "out": n.outputs[0], "out_quant": [q.s, q.z]}


def _match(i: int, g: Graph, readers: dict[str, list[int]], producer: dict[str, int]) -> list[int] | None:
    """Node indices [expand?, depthwise, project, residual?] of a block whose depthwise is node i."""
    nodes = g.nodes
    d = nodes[i]
    if not is_depthwise(d, g):
        return None

    def only_reader(t: str) -> int | None:
        r = readers.get(t, [])
        return r[0] if len(r) == 1 and t not in g.outputs else None

    block = [i]
    a = producer.get(d.inputs[0])
    if (a is not None and nodes[a].op == Op.CONV2D and int(nodes[a].attrs.get("groups", 1)) == 1
            and only_reader(d.inputs[0]) == i):
        block.insert(0, a)
    p = only_reader(d.outputs[0])
    if p is None or not is_pointwise(nodes[p], g):
        return None
    block.append(p)
    x = nodes[block[0]].inputs[0]
    r = only_reader(nodes[p].outputs[0])
    if r is not None and nodes[r].op == Op.ADD and x in nodes[r].inputs and nodes[p].outputs[0] in nodes[r].inputs:
        block.append(r)
    return block


def _frozen(block: list[int], g: Graph, readers: dict[str, list[int]], updated: set[str]) -> bool:
    inside = set(block)
    for k in block:
        n = g.nodes[k]
        consts = [t for t in n.inputs if g.tensors[t].is_const]
        if any(t in updated or set(readers[t]) - inside for t in consts):
            return False
    for k in block[:-1]:  # intermediates: read only by the next stage
        if set(readers[g.nodes[k].outputs[0]]) - inside:
            return False
    return True


def fused_node(block: list[Node], g: Graph) -> tuple[Node, Tensor]:
    """The FUSED_INVERTED_BOTTLENECK node of a matched block, and its scratch tensor."""
    roles = (["expand"] if not is_depthwise(block[0], g) else []) + ["depthwise", "project"]
    roles += ["residual"] if block[-1].op == Op.ADD else []
    x, y = block[0].inputs[0], block[-1].outputs[0]
    consts = tuple(t for n in block if n.op == Op.CONV2D for t in n.inputs[1:])
    stages = [_stage(role, n, g) for role, n in zip(roles, block, strict=True)]
    attrs = {"stages": stages, "shortcut_first": block[-1].op == Op.ADD and block[-1].inputs[0] == x,
             "scratch_bytes": 0}
    name = f"fused[{block[0].name}..{block[-1].name}]"
    scratch = f"{name}.scratch"
    node = Node(name, FUSED, (x, *consts), (y, scratch), attrs)
    size = scratch_bytes(node, g)
    node = Node(name, FUSED, node.inputs, node.outputs, {**attrs, "scratch_bytes": size})
    return node, Tensor(scratch, (size,), "int8", SCRATCH_QUANT)


def fuse_frozen_blocks(graph: Graph) -> Graph:
    """Replace every frozen inverted-bottleneck block by one fused node (at its first node's place)."""
    nodes = graph.nodes
    readers: dict[str, list[int]] = {}
    producer: dict[str, int] = {}
    for k, n in enumerate(nodes):
        for t in n.inputs:
            readers.setdefault(t, []).append(k)
        for t in n.outputs:
            producer[t] = k
    updated = {n.inputs[0] for n in nodes if n.op in UPDATE_OPS}
    claimed: set[int] = set()
    replace: dict[int, tuple[Node, Tensor]] = {}
    for i in range(len(nodes)):
        block = _match(i, graph, readers, producer)
        if (block is None or claimed & set(block) or not _frozen(block, graph, readers, updated)
                or any("band" in nodes[k].attrs for k in block)):  # split_bands already runs it by rows
            continue
        node, scratch = fused_node([nodes[k] for k in block], graph)
        claimed |= set(block)
        replace[block[0]] = (node, scratch)
    if not replace:
        return graph
    tensors = dict(graph.tensors)
    new_nodes = []
    for k, n in enumerate(nodes):
        if k in replace:
            node, scratch = replace[k]
            new_nodes.append(node)
            tensors[scratch.name] = scratch
            for inner in node.attrs["stages"][:-1]:
                tensors.pop(inner["out"], None)
        elif k not in claimed:
            new_nodes.append(n)
    return graph.replace(tensors=tensors, nodes=tuple(new_nodes))
