"""Pass 8: band-by-band (patch-based) execution of the early high-resolution stage.

The first layers of an ImageNet backbone hold the largest activations (MbV2-w0.35: a 64x64x48
expansion output, 192 KB), but only briefly, and nothing in the backward reads them when
the scheme updates later layers. Here a *chain* of leading CONV2D nodes (each output read
only by the next) is run one band of output rows at a time, as MCUNetV2's patch-based
inference does in one dimension: for each band of rows of the chain's last output, every
layer computes just the rows the next layer needs (with a halo of overlapping rows, which
are recomputed), into small band buffers. Each output row is computed from exactly the same
operands as in the whole-tensor execution, so results are bit-exact; the cost is the
recomputed halo rows.

The pass only annotates nodes (attrs ``band``); the planner sizes band buffers by their
largest band and keeps them, the chain's input and its output alive across the chain, and
the code generator unrolls the bands. It tries every chain length and a few band counts and
keeps the plan with the lowest peak (or leaves the graph unchanged when banding does not help).
"""

from __future__ import annotations

import dataclasses

from microtrain.compiler.plan_memory import plan_memory
from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import Op
from microtrain.ir.verify import verify_graph

BAND_COUNTS = (2, 4, 8, 16)


def find_chain(graph: Graph) -> list[int]:
    """Indices of the leading CONV2D nodes that can run band by band (possibly empty)."""
    nodes = graph.nodes
    if not nodes or nodes[0].op != Op.CONV2D or nodes[0].inputs[0] not in graph.inputs:
        return []
    readers: dict[str, int] = {}
    for n in nodes:
        for x in n.inputs:
            readers[x] = readers.get(x, 0) + 1
    chain = [0]
    while chain[-1] + 1 < len(nodes):
        cur, nxt = nodes[chain[-1]], nodes[chain[-1] + 1]
        out = cur.outputs[0]
        if nxt.op != Op.CONV2D or nxt.inputs[0] != out or readers.get(out, 0) != 1 or out in graph.outputs:
            break
        chain.append(chain[-1] + 1)
    return chain


def band_rows(graph: Graph, chain: list[Node], bands: int) -> list[dict]:
    """Per chain node: its output rows per band and its input rows + paddings per band."""
    last = graph.tensors[chain[-1].outputs[0]]
    h = last.shape[1]
    edges = [round(i * h / bands) for i in range(bands + 1)]
    rows = [[(edges[i], edges[i + 1]) for i in range(bands) if edges[i + 1] > edges[i]]]
    ins = []
    for node in reversed(chain):
        x = graph.tensors[node.inputs[0]]
        kh = graph.tensors[node.inputs[1]].shape[1]
        s = int(node.attrs.get("stride", (1, 1))[0])
        p = int(node.attrs.get("padding", (0, 0, 0, 0))[0])
        per_band = []
        for a, b in rows[0]:
            lo, hi = a * s - p, (b - 1) * s - p + kh
            i0, i1 = max(0, lo), min(x.shape[1], hi)
            per_band.append((i0, i1, i0 - lo, hi - i1))
        ins.insert(0, per_band)
        rows.insert(0, [(i0, i1) for i0, i1, _, _ in per_band])
    return [{"rows": rows[k + 1], "in_rows": ins[k]} for k in range(len(chain))]


def annotate(graph: Graph, idx: list[int], bands: int) -> Graph:
    chain = [graph.nodes[i] for i in idx]
    info = band_rows(graph, chain, bands)
    nodes = list(graph.nodes)
    for k, i in enumerate(idx):
        band = {"chain": chain[0].name, "index": k, "length": len(idx), "bands": bands,
                "rows": [list(r) for r in info[k]["rows"]], "in_rows": [list(r) for r in info[k]["in_rows"]]}
        nodes[i] = dataclasses.replace(nodes[i], attrs={**nodes[i].attrs, "band": band})
    return graph.replace(nodes=tuple(nodes))


def split_bands(graph: Graph) -> Graph:
    chain = find_chain(graph)
    best, best_peak = graph, plan_memory(graph).peak_bytes
    for length in range(2, len(chain) + 1):
        for bands in BAND_COUNTS:
            if bands > graph.tensors[graph.nodes[chain[length - 1]].outputs[0]].shape[1]:
                continue
            cand = annotate(graph, chain[:length], bands)
            peak = plan_memory(cand).peak_bytes
            if peak < best_peak:
                best, best_peak = cand, peak
    return verify_graph(best)
