"""Pass 8: static memory plan: every non-constant tensor gets an offset in one arena.

1. Lifetimes over the final schedule: a tensor lives from the step that produces it
   (graph inputs: step -1) to the last step that reads it (the loss: the end).
2. In-place (``compiler/inplace.py``): ``INPLACE_RULES[op]`` names the operands an op may overwrite (elementwise ops
   whose kernels allow aliasing; also a same-shape depthwise input gradient, see
   ``inplace_operands``); when such an operand dies at that op and has the output's
   size, output and operand share one buffer. RESHAPE is always a view.
   Lagged in-place (``overwrites``): a FUSED_INVERTED_BOTTLENECK whose input dies at it and
   whose kernel provably never writes an output row over input bytes a later row still reads
   (``inplace.inverted_bottleneck_inplace_ok``: a stride-2 block's output row r lands on input
   rows < 2r+1) may start its (smaller) output buffer at its input buffer's offset: the two
   buffers stay separate (each keeps its own size and lifetime, so the input's tail is free
   again after the step) but may share bytes at that one step, at the same offset only.
3. Offsets: an algorithm from ``ALGORITHMS`` (one signature: buffers -> offsets); the
   default is greedy-by-size first-fit (largest buffer first, lowest offset that overlaps
   no placed buffer with an intersecting lifetime), as TFLite Micro's greedy planner.
   Limits: one arena, no splitting of a buffer, alignment 8 bytes.
4. ``verify_plan`` checks independently that no two buffers alive at the same step overlap,
   except an ``overwrites`` pair at the same offset whose lifetimes meet at one step only;
   ``verify_overwrites`` re-derives each such pair from the graph (the op, the operands, the
   kernel's aliasing rule).

Constants are not in the arena: frozen weights stay in flash, trained weights and biases
are static RAM (reported as ``trainable``; of a weight split by ``split_trained_rows`` only
its kept rows), and so is the optimizer state that lives across steps: gradient accumulation
and momentum buffers, fp32 per kept element (reported as ``optimizer_state``,
``runtime/rounding.optimizer_state``). ``label`` and ``lr`` are scalar arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from microtrain.compiler.build_training_graph import forward_end
from microtrain.compiler.inplace import inplace_operands, overwrite_ok
from microtrain.compiler.split_trained_rows import ram_rows, stored_bytes
from microtrain.ir.graph import Graph
from microtrain.ir.ops import UPDATE_OPS, Op
from microtrain.runtime.rounding import optimizer_state

ALIGN = 8
SCALAR_INPUTS = ("label", "lr")


@dataclasses.dataclass
class Buffer:
    name: str
    size: int
    first: int
    last: int
    kind: str
    tensors: list[str]
    offset: int = -1
    used: int = 0
    """Bytes actually read/written (the size before alignment)."""
    overwrites: str | None = None
    """Buffer that dies at this buffer's first step and that this one is written over, from the
    same offset (lagged in-place, see the module docstring); None: no sharing."""


@dataclasses.dataclass
class MemoryPlan:
    buffers: list[Buffer]
    arena_bytes: int
    trainable_bytes: int
    steps: list[str]
    trainable: dict[str, int]
    state: dict[str, int] = dataclasses.field(default_factory=dict)
    """Optimizer state in static RAM: "<tensor>:accum" / "<tensor>:momentum" -> bytes."""

    @property
    def state_bytes(self) -> int:
        return sum(self.state.values())

    @property
    def no_reuse_bytes(self) -> int:
        """The arena without any reuse (``no_reuse``: every buffer its own aligned space), the
        baseline of the planner's saving, from this plan's buffers (no second plan)."""
        sizes = [b.size for b in self.buffers]
        return sum(_align(n) for n in sizes[:-1]) + (sizes[-1] if sizes else 0)

    def buffer_of(self, tensor: str) -> Buffer:
        for b in self.buffers:
            if tensor in b.tensors:
                return b
        raise KeyError(tensor)

    def _counted(self, b: Buffer, step: int) -> bool:
        """Is ``b`` alive at ``step`` with bytes of its own? A lagged in-place output at the step
        where it is written over its input lies inside the input's bytes: counted once."""
        if not b.first <= step <= b.last:
            return False
        if b.overwrites is not None and step == b.first:
            v = next(x for x in self.buffers if x.name == b.overwrites)
            return not (v.offset == b.offset and v.last == step)
        return True

    def live_bytes(self) -> list[int]:
        """Bytes of live buffers at each step (index 0 = before the first node)."""
        n = len(self.steps)
        return [sum(b.size for b in self.buffers if self._counted(b, s - 1)) for s in range(n + 1)]

    def peak_breakdown(self) -> dict[str, int]:
        """Bytes per kind alive at the step of the largest live total, plus the static parts."""
        live = self.live_bytes()
        step = max(range(len(live)), key=live.__getitem__) - 1
        out: dict[str, int] = {}
        for b in self.buffers:
            if self._counted(b, step):
                out[b.kind] = out.get(b.kind, 0) + b.size
        out["trainable"] = self.trainable_bytes
        if self.state:
            out["optimizer_state"] = self.state_bytes
        out["at_step"] = step
        return out

    @property
    def peak_bytes(self) -> int:
        return self.arena_bytes + self.trainable_bytes + self.state_bytes


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def tensor_bytes(graph: Graph, name: str, chunks: dict[str, int], bands: dict[str, int] | None = None) -> int:
    t = graph.tensors[name]
    if bands and name in bands:  # a band buffer of a chain run band by band (split_bands)
        return bands[name]
    if name in chunks:  # a gradient computed and applied one output-channel chunk at a time
        return t.nbytes // t.shape[0] * chunks[name]
    return t.nbytes


def _kind(graph: Graph, name: str, backward_readers: set[str], param_grads: set[str], fwd_outputs: set[str]) -> str:
    t = graph.tensors[name]
    if name in graph.inputs:
        return "input"
    if t.dtype == "uint8":
        return "masks"
    if name in param_grads:
        return "weight_gradients"
    if name in fwd_outputs and t.dtype == "int8":
        return "saved" if name in backward_readers else "activations"
    if name in fwd_outputs:
        return "loss"
    return "gradients"


def lifetimes(graph: Graph) -> list[Buffer]:
    nodes = graph.nodes
    end = len(nodes)
    streamed = graph.inputs[:1] if graph.meta.get("stream_input") else ()  # compiler/stream_input.py
    first: dict[str, int] = {n: -1 for n in graph.inputs if n not in SCALAR_INPUTS and n not in streamed}
    last: dict[str, int] = dict(first)
    for i, node in enumerate(nodes):
        for o in node.outputs:
            if not graph.tensors[o].is_const:
                first.setdefault(o, i)
                last[o] = max(last.get(o, i), i)
        for x in node.inputs:
            if x in first:
                last[x] = max(last[x], i)
    for o in graph.outputs:
        last[o] = end
    chunks = {n.outputs[0]: n.attrs["chunk"] for n in nodes if "chunk" in n.attrs and n.op not in UPDATE_OPS}
    bands = _band_buffers(graph, first, last)
    fwd_end = forward_end(graph)
    fwd_outputs = {o for n in nodes[:fwd_end] for o in n.outputs}
    backward_readers = {x for n in nodes[fwd_end:] for x in n.inputs}
    param_grads = {n.inputs[1] for n in nodes if n.op in UPDATE_OPS}
    # union-find over in-place/view pairs: buffer id of each tensor
    group = {name: name for name in first}
    group_last = dict(last)  # per root: the last step any tensor of its buffer is read

    def root(n: str) -> str:
        while group[n] != n:
            n = group[n]
        return n

    for i, node in enumerate(nodes):
        out = node.outputs[0]
        if out not in group:
            continue
        if node.op == Op.RESHAPE and node.inputs[0] in group:
            r = root(node.inputs[0])
            group[out] = r
            group_last[r] = max(group_last[r], last[out])
            continue
        for k in inplace_operands(graph, node):
            x = node.inputs[k]
            if (x in group and group_last[root(x)] == i and x not in graph.inputs
                    and graph.tensors[x].nbytes == graph.tensors[out].nbytes and out not in chunks):
                r = root(x)
                group[out] = r
                group_last[r] = last[out]
                break
    buffers: dict[str, Buffer] = {}
    for name in first:
        r = root(name)
        used = tensor_bytes(graph, name, chunks, bands)
        size = _align(used)
        if r not in buffers:
            buffers[r] = Buffer(r, size, first[name], last[name],
                                _kind(graph, r, backward_readers, param_grads, fwd_outputs), [name], used=used)
        else:
            b = buffers[r]
            b.size, b.first, b.last = max(b.size, size), min(b.first, first[name]), max(b.last, last[name])
            b.used = max(b.used, used)
            b.tensors.append(name)
    for i, node in enumerate(nodes):
        if overwrite_ok(graph, node) and node.inputs[0] in group and node.outputs[0] in group:
            victim, writer = buffers[root(node.inputs[0])], buffers[root(node.outputs[0])]
            if (victim is not writer and victim.last == i == writer.first and writer.size <= victim.size
                    and writer.used == graph.tensors[node.outputs[0]].nbytes):
                writer.overwrites = victim.name
    return list(buffers.values())


def _band_buffers(graph: Graph, first: dict[str, int], last: dict[str, int]) -> dict[str, int]:
    """Sizes of band buffers; widens the lifetimes of a banded chain's tensors to the whole chain."""
    chains: dict[str, list[int]] = {}
    for i, n in enumerate(graph.nodes):
        if "band" in n.attrs:
            chains.setdefault(n.attrs["band"]["chain"], []).append(i)
    sizes = {}
    for idx in chains.values():
        s0, s1 = idx[0], idx[-1]
        for i in idx[:-1]:
            out = graph.nodes[i].outputs[0]
            t = graph.tensors[out]
            rows = max(b - a for a, b in graph.nodes[i].attrs["band"]["rows"])
            sizes[out] = rows * t.nbytes // t.shape[1]
            first[out], last[out] = s0, s1
        first[graph.nodes[s1].outputs[0]] = s0
        x = graph.nodes[s0].inputs[0]
        if x in last:
            last[x] = max(last[x], s1)
    return sizes


def _overlaps_in_time(a: Buffer, b: Buffer) -> bool:
    return a.first <= b.last and b.first <= a.last


def _partners(buffers: list[Buffer]) -> dict[str, set[str]]:
    """Buffer name -> the buffers it may share its start with (both directions of ``overwrites``)."""
    out: dict[str, set[str]] = {}
    for b in buffers:
        if b.overwrites is not None:
            out.setdefault(b.name, set()).add(b.overwrites)
            out.setdefault(b.overwrites, set()).add(b.name)
    return out


def greedy_by_size(buffers: list[Buffer]) -> dict[str, int]:
    placed: list[tuple[int, int, Buffer]] = []
    offsets: dict[str, int] = {}
    partners = _partners(buffers)
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.name)):
        conflicts = sorted((o, o + b.size, b.name) for o, _, b in placed if _overlaps_in_time(b, buf))
        offset = 0
        for lo, hi, _ in conflicts:  # first fit: the lowest gap that holds the buffer
            if offset + buf.size <= lo:
                break
            offset = max(offset, _align(hi))
        # lagged in place: start at a placed partner's offset if nothing else is in the way there
        for at in sorted(offsets[p] for p in partners.get(buf.name, ()) if p in offsets):
            if at < offset and all(hi <= at or lo >= at + buf.size or (name in partners[buf.name] and lo == at)
                                   for lo, hi, name in conflicts):
                offset = at
                break
        offsets[buf.name] = offset
        placed.append((offset, buf.size, buf))
    return offsets


def no_reuse(buffers: list[Buffer]) -> dict[str, int]:
    """Every buffer its own space: the baseline the planner's saving is measured against."""
    offsets, top = {}, 0
    for buf in buffers:
        offsets[buf.name] = top
        top += _align(buf.size)
    return offsets


PlanAlgorithm = Callable[[list[Buffer]], dict[str, int]]
ALGORITHMS: dict[str, PlanAlgorithm] = {"greedy_by_size": greedy_by_size, "no_reuse": no_reuse}


def _may_share(a: Buffer, b: Buffer) -> bool:
    """An ``overwrites`` pair placed as the kernel needs: same offset, the writer no larger, alive
    together only at the step where the victim dies and the writer is born."""
    for w, v in ((a, b), (b, a)):
        if w.overwrites == v.name:
            return w.offset == v.offset and w.size <= v.size and w.first == v.last
    return False


def verify_plan(buffers: list[Buffer]) -> None:
    """Raise if two buffers alive at the same step share a byte (except an ``overwrites`` pair at
    the same offset meeting at one step), or an offset is unaligned."""
    for b in buffers:
        if b.offset < 0 or b.offset % ALIGN:
            raise AssertionError(f"buffer {b.name!r} has bad offset {b.offset}")
    order = sorted(buffers, key=lambda b: b.offset)
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            if b.offset >= a.offset + a.size:
                break
            if _overlaps_in_time(a, b) and not _may_share(a, b):
                raise AssertionError(f"buffers {a.name!r} [{a.offset}, {a.offset + a.size}) steps {a.first}..{a.last} "
                                     f"and {b.name!r} [{b.offset}, {b.offset + b.size}) steps {b.first}..{b.last} "
                                     "overlap")


def verify_overwrites(graph: Graph, buffers: list[Buffer]) -> None:
    """Raise unless every ``overwrites`` pair is a FUSED_INVERTED_BOTTLENECK at the writer's first
    step, reading the victim as its input and writing the writer as its output, whose kernel
    allows the output over the input (re-derived here from the graph, not from lifetimes)."""
    by_name = {b.name: b for b in buffers}
    for w in buffers:
        if w.overwrites is None:
            continue
        v = by_name[w.overwrites]
        node = graph.nodes[w.first] if 0 <= w.first < len(graph.nodes) else None
        if (node is None or node.op != Op.FUSED_INVERTED_BOTTLENECK or node.inputs[0] not in v.tensors
                or node.outputs[0] not in w.tensors or not overwrite_ok(graph, node)
                or any(t in n.inputs for t in v.tensors for n in graph.nodes[w.first + 1:])
                or any(t in graph.outputs for t in v.tensors)):
            raise AssertionError(f"buffer {w.name!r} may not be written over {v.name!r} at step {w.first}")


def plan_memory(graph: Graph, algorithm: str = "greedy_by_size") -> MemoryPlan:
    buffers = lifetimes(graph)
    offsets = ALGORITHMS[algorithm](buffers)
    for b in buffers:
        b.offset = offsets[b.name]
    verify_plan(buffers)
    verify_overwrites(graph, buffers)
    arena = max((b.offset + b.size for b in buffers), default=0)
    updated = {n.inputs[0] for n in graph.nodes if n.op in UPDATE_OPS}
    split = ram_rows(graph)  # partially trained weights: only the kept rows are in RAM
    trainable = {n: stored_bytes(graph, n, split) for n in sorted(updated)}
    state = {f"{n.inputs[0]}:{kind}": size for n in graph.nodes if n.op in UPDATE_OPS
             for kind, size in optimizer_state(n, graph).items()}
    return MemoryPlan(buffers, arena, sum(trainable.values()), [n.name for n in graph.nodes], trainable, state)


def format_plan(plan: MemoryPlan, limit: int = 60) -> str:
    """One line per buffer, by offset: [offset, end) size kind lifetime tensors."""
    lines = [f"arena {plan.arena_bytes} B ({plan.arena_bytes / 1024:.1f} KB), trainable in RAM "
             f"{plan.trainable_bytes} B, optimizer state {plan.state_bytes} B, peak {plan.peak_bytes / 1024:.1f} KB"]
    for b in sorted(plan.buffers, key=lambda b: (b.offset, b.first))[:limit]:
        names = ", ".join(b.tensors[:3]) + (" ..." if len(b.tensors) > 3 else "")
        lines.append(f"  [{b.offset:>8}, {b.offset + b.size:>8}) {b.size:>8} {b.kind:<16} "
                     f"steps {b.first:>4}..{b.last:<4} {names}")
    if len(plan.buffers) > limit:
        lines.append(f"  ... {len(plan.buffers) - limit} more buffers")
    return "\n".join(lines)
