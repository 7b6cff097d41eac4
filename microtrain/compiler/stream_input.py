"""Pass (opt-in, ``CompileOptions.stream_input``): the input image is streamed, not stored.

When the first stage is a fused frozen block (``fuse_frozen_blocks``) whose input is the
graph input, with an expansion conv (the network's first conv) and no residual, and no other
node reads the input (no trained first layer, no saved input for a backward), the block's
kernel can pull the input rows it needs, in order and once each, into a ring of kernel_h
rows (``mt_inverted_bottleneck_stream_s8``). The planner then gives the input no arena
buffer (``plan_memory`` skips a graph input named in ``meta["stream_input"]``) and the
generated C reads the rows through a callback (a line-scan sensor, camera lines by DMA, a
file). The graph's nodes and semantics do not change, so results are bit-exact.
"""

from __future__ import annotations

from microtrain.compiler.build_training_graph import CompileError
from microtrain.ir.fused_blocks import FUSED
from microtrain.ir.graph import Graph


def input_ring_bytes(graph: Graph) -> int:
    """Bytes of the streamed input ring: min(kernel_h, in_h) rows of the first conv's input."""
    node = graph.node(graph.meta["stream_input"])
    _, h, w, c = graph.tensors[node.inputs[0]].shape
    kh = graph.tensors[node.inputs[1]].shape[1]  # the expansion weight, OHWI
    return min(kh, h) * w * c


def stream_input(graph: Graph) -> Graph:
    x = graph.inputs[0]
    readers = [n for n in graph.nodes if x in n.inputs]
    if not readers or readers[0].op != FUSED:
        first = readers[0].name if readers else "nothing"
        raise CompileError(f"--stream-input needs the first stage to be a fused frozen block reading the input, "
                           f"but the input is read by {first!r}: freeze the first layers (the scheme trains "
                           f"them, or the model has no inverted-bottleneck first stage) or drop --stream-input")
    node = readers[0]
    if len(readers) > 1 or x in graph.outputs:
        others = ", ".join(repr(n.name) for n in readers[1:])
        raise CompileError(f"--stream-input: the input is also read by {others or 'an output'} (e.g. a trained "
                           f"first layer's weight gradient), so it must be stored whole; drop --stream-input")
    roles = [s["role"] for s in node.attrs["stages"]]
    if roles[0] != "expand" or "residual" in roles:
        raise CompileError(f"--stream-input: the first fused block {node.name!r} has stages {roles}; streaming "
                           f"needs an expansion conv first and no residual (which re-reads the input)")
    return graph.replace(meta={**graph.meta, "stream_input": node.name})
