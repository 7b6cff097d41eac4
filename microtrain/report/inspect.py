"""Per-layer analysis of an int8 inference graph, like ``stedgeai analyze``.

``analyze(graph) -> dict`` (JSON-serialisable) and ``format_table(analysis) -> str``; the
``microtrain inspect`` verb and the demo print it.

What the numbers mean (bytes; KB = 1024 bytes):
* params: elements of the node's constant operands (weights + biases).
* flash bytes of a node: its constants at their dtype size (int8 weights, int32 biases)
  plus the per-output-channel requantization multiplier and shift of a CONV2D /
  FULLY_CONNECTED, stored as two int32 each (computed at compile time, kept in flash).
  The scalar parameters of ADD / pooling are a few bytes per node and not counted.
* MACs: multiply-accumulates, ``OH*OW*O*kh*kw*(C/groups)`` for a conv, ``O*C`` for a fully
  connected layer; the other ops do none (``MACS_RULES``).
* activation bytes of a node: its non-constant inputs plus its outputs.
* peak SRAM: the int8 inference arena under the simplest execution order: the nodes run in
  graph order, a tensor is live from the node that produces it (a graph input: from the
  start) through its last consumer (a graph output: to the end), and at each node every
  live tensor occupies its own buffer, so a residual shortcut stays live across its block.
  No buffer sharing, no in-place ops (RESHAPE counts as a copy), no patch-based execution:
  an upper bound that a memory planner improves on. The node where the peak occurs and the
  tensors live there are reported.
"""

from __future__ import annotations

from collections.abc import Callable

from microtrain.ir.fused_blocks import block_subgraph
from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import FLOAT_OPS, INT8_OPS, WEIGHTED_OPS, Op
from microtrain.report.tables import Column, fmt_int, render

MacsRule = Callable[[Node, Graph], int]


def _conv_macs(node: Node, graph: Graph) -> int:
    out_c, kh, kw, in_per_group = graph.tensors[node.inputs[1]].shape
    _, oh, ow, _ = graph.tensors[node.outputs[0]].shape
    return oh * ow * out_c * kh * kw * in_per_group


def _fc_macs(node: Node, graph: Graph) -> int:
    out_c, in_c = graph.tensors[node.inputs[1]].shape
    return out_c * in_c


def _no_macs(node: Node, graph: Graph) -> int:
    return 0


def _fused_macs(node: Node, graph: Graph) -> int:
    """The sum of the block's convs (the fused kernel computes each element once)."""
    sub = block_subgraph(node, graph)
    return sum(_conv_macs(n, sub) for n in sub.nodes if n.op == Op.CONV2D)


MACS_RULES: dict[Op, MacsRule] = {
    Op.CONV2D: _conv_macs,
    Op.FULLY_CONNECTED: _fc_macs,
    Op.ADD: _no_macs,
    Op.GLOBAL_AVG_POOL: _no_macs,
    Op.RESHAPE: _no_macs,
    Op.DEQUANTIZE: _no_macs,
    Op.SOFTMAX_CROSS_ENTROPY: _no_macs,
    Op.MEAN_SQUARED_ERROR: _no_macs,
    Op.FUSED_INVERTED_BOTTLENECK: _fused_macs,
    Op.AVG_POOL2D: _no_macs,
    Op.MAX_POOL2D: _no_macs,
    Op.PAD: _no_macs,
    Op.CONCAT: _no_macs,
    Op.SOFTMAX: _no_macs,
}

MACS_RULES_EXEMPT = frozenset(op for op in Op if op not in INT8_OPS | FLOAT_OPS)
"""Inspect analyses inference graphs; the training ops the compiler adds have no MAC count here."""

REQUANT_BYTES_PER_CHANNEL = 8
"""int32 multiplier + int32 shift per output channel of a weighted op."""


def _node_row(index: int, node: Node, graph: Graph) -> dict:
    consts = [graph.tensors[n] for n in node.inputs if graph.tensors[n].is_const]
    acts_in = [graph.tensors[n] for n in node.inputs if not graph.tensors[n].is_const]
    outs = [graph.tensors[n] for n in node.outputs]
    weights = graph.tensors[node.inputs[1]] if node.op in WEIGHTED_OPS else None
    requant = REQUANT_BYTES_PER_CHANNEL * weights.shape[0] if weights is not None else 0
    rule = MACS_RULES.get(node.op)
    row = {
        "index": index,
        "name": node.name,
        "op": node.op.value,
        "input_shapes": [list(t.shape) for t in acts_in],
        "output_shapes": [list(t.shape) for t in outs],
        "kernel": list(weights.shape[1:3]) if node.op == Op.CONV2D else None,
        "stride": list(node.attrs.get("stride", (1, 1))) if node.op == Op.CONV2D else None,
        "groups": int(node.attrs.get("groups", 1)) if node.op == Op.CONV2D else None,
        "params": sum(t.size for t in consts),
        "weight_bytes": weights.nbytes if weights is not None else 0,
        "flash_bytes": sum(t.nbytes for t in consts) + requant,
        "requant_bytes": requant,
        "macs": rule(node, graph) if rule is not None else None,
        "activation_bytes": sum(t.nbytes for t in acts_in) + sum(t.nbytes for t in outs),
    }
    return row


def _peak(graph: Graph) -> dict:
    """Peak live bytes under graph order (see the module docstring for the model)."""
    end = len(graph.nodes)
    start: dict[str, int] = {n: -1 for n in graph.inputs}
    last: dict[str, int] = {n: -1 for n in graph.inputs}
    for i, node in enumerate(graph.nodes):
        for n in node.outputs:
            start.setdefault(n, i)
            last[n] = max(last.get(n, i), i)
        for n in node.inputs:
            if not graph.tensors[n].is_const:
                last[n] = max(last.get(n, i), i)
    for n in graph.outputs:
        last[n] = end
    best = {"bytes": -1, "index": None, "node": None, "tensors": []}
    for i, node in enumerate(graph.nodes):
        live = [n for n in start if start[n] <= i <= last[n]]
        total = sum(graph.tensors[n].nbytes for n in live)
        if total > best["bytes"]:
            best = {"bytes": total, "index": i, "node": node.name, "tensors": sorted(live)}
    if best["index"] is None:  # a graph without nodes: its inputs are the arena
        best = {"bytes": sum(graph.tensors[n].nbytes for n in graph.inputs), "index": None, "node": None,
                "tensors": sorted(graph.inputs)}
    return best


def analyze(graph: Graph) -> dict:
    """The per-node table and the totals, as one JSON-serialisable dict."""
    layers = [_node_row(i, node, graph) for i, node in enumerate(graph.nodes)]
    consts = [t for t in graph.tensors.values() if t.is_const]
    weighted = {n.inputs[1] for n in graph.weighted_nodes()}
    biases = {n.inputs[2] for n in graph.weighted_nodes()}
    conv_weights = sum(graph.tensors[n.inputs[1]].size for n in graph.nodes if n.op == Op.CONV2D)
    peak = _peak(graph)
    flash = {
        "weights": sum(t.nbytes for t in consts if t.name in weighted),
        "biases": sum(t.nbytes for t in consts if t.name in biases),
        "requant": sum(r["requant_bytes"] for r in layers),
    }
    flash["other_constants"] = sum(t.nbytes for t in consts) - flash["weights"] - flash["biases"]
    unknown = [r["name"] for r in layers if r["macs"] is None]
    totals = {
        "nodes": len(layers),
        "layers": len(graph.weighted_nodes()),
        "params": sum(t.size for t in consts),
        "conv_weights": conv_weights,
        "conv_macs": sum(r["macs"] for r in layers if r["op"] == Op.CONV2D.value),
        "macs": sum(r["macs"] for r in layers if r["macs"] is not None),
        "macs_unknown_nodes": unknown,
        "flash_bytes": sum(flash.values()),
        "flash_breakdown": flash,
        "peak_sram_bytes": peak["bytes"],
        "peak_node": peak["node"],
        "peak_index": peak["index"],
        "peak_tensors": peak["tensors"],
        "input_bytes": sum(graph.tensors[n].nbytes for n in graph.inputs),
        "output_bytes": sum(graph.tensors[n].nbytes for n in graph.outputs),
    }
    return {"meta": dict(graph.meta), "layers": layers, "totals": totals}


def _shape(shape: list[int]) -> str:
    # Activations are batch 1: drop the leading 1 to keep the column narrow.
    dims = shape[1:] if len(shape) > 1 and shape[0] == 1 else shape
    return "x".join(str(d) for d in dims)


def _kb(n: int) -> str:
    return f"{n:,} B ({n / 1024:.1f} KB)"


def format_table(analysis: dict) -> str:
    cols = [
        Column("#", ">"), Column("node"), Column("op"), Column("input -> output"),
        Column("kernel"), Column("stride"), Column("groups", ">"),
        Column("params", ">", fmt_int), Column("flash B", ">", fmt_int), Column("MACs", ">", fmt_int),
        Column("act B", ">", fmt_int),
    ]
    rows = []
    for r in analysis["layers"]:
        shapes = " + ".join(_shape(s) for s in r["input_shapes"]) + " -> " + ", ".join(
            _shape(s) for s in r["output_shapes"])
        rows.append([r["index"], r["name"], r["op"], shapes,
                     "x".join(map(str, r["kernel"])) if r["kernel"] else None,
                     "x".join(map(str, r["stride"])) if r["stride"] else None,
                     r["groups"], r["params"], r["flash_bytes"], r["macs"], r["activation_bytes"]])
    t = analysis["totals"]
    totals = [None, "total", None, None, None, None, None, t["params"], t["flash_bytes"], t["macs"], None]
    f = t["flash_breakdown"]
    lines = [render(cols, rows, totals), ""]
    lines.append(f"layers (conv + fc): {t['layers']}   conv weights: {t['conv_weights']:,}   "
                 f"MACs: {t['macs'] / 1e6:.2f} M (convs {t['conv_macs'] / 1e6:.2f} M)")
    lines.append(f"flash: {_kb(t['flash_bytes'])} = weights {f['weights']:,} + biases {f['biases']:,} + "
                 f"requant multipliers/shifts {f['requant']:,} + other constants {f['other_constants']:,}")
    where = f"at node #{t['peak_index']} {t['peak_node']}" if t["peak_node"] is not None else "(no nodes)"
    lines.append(f"peak SRAM (int8 inference, graph order, no buffer sharing): {_kb(t['peak_sram_bytes'])} "
                 f"{where}; live: {', '.join(t['peak_tensors'])}")
    if t["macs_unknown_nodes"]:
        lines.append(f"MACs not counted for: {', '.join(t['macs_unknown_nodes'])}")
    return "\n".join(lines)
