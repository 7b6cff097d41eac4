"""What the C emit rules share: C names, storage of every tensor, compile-time constants.

Storage: a tensor in the memory plan lives in the one static arena at its planned offset;
a frozen constant is a ``static const`` array (flash); a trained weight or bias is a plain
array (RAM, initialised from the model), except a weight marked by ``split_trained_rows``:
its kept rows are the RAM array, its frozen rows a const array, and a const table of row
pointers (``rows_table``) lets the pointwise ``*_rows`` kernels read both. Every number the kernels need (multipliers,
shifts, scales, QAS factors, channel lists) is computed here in Python and written as a
constant; floats are written as exact C99 hexadecimal literals.
"""

from __future__ import annotations

import re

import numpy as np

from microtrain.compiler.plan_memory import MemoryPlan
from microtrain.compiler.split_trained_rows import ram_rows, stored_bytes
from microtrain.ir.buffer_sizes import PW_EXTEND_MAX
from microtrain.ir.conv_kinds import is_depthwise, is_pointwise
from microtrain.ir.graph import Graph, Node
from microtrain.ir.ops import UPDATE_OPS, Op
from microtrain.runtime import packs, twins

EXTENDED_ROWS_BUDGET = 192 * 1024
"""Flash bytes the pre-extended weight rows of 1x1 convs may take in all (CContext.extended_rows)."""

PACKS = ("full", "words", "off")
"""The set-up packs emitted for frozen convs, most flash first (docs/targets.md): ``full`` the words and,
within EXTENDED_ROWS_BUDGET, pre-extended 1x1 rows; ``words`` the words only; ``off`` none (every kernel
derives its set-up per call: the least flash, the slowest int8 forward). Same integers in all three."""

CTYPES = {"int8": "int8_t", "uint8": "uint8_t", "int32": "int32_t", "float32": "float", "int16": "int16_t"}


def c_float(v: float) -> str:
    """Exact float32 literal (C99 hex float)."""
    f = float(np.float32(v))
    if not np.isfinite(f):
        raise ValueError(f"non-finite constant {v}")
    return f"{f.hex()}f" if f != 0 else "0.0f"


def c_array_body(values: np.ndarray, ctype: str, per_line: int = 24) -> str:
    flat = np.asarray(values).reshape(-1)
    if ctype == "float":
        items = [c_float(v) for v in flat]
    elif ctype == "int32_t":
        items = [str(int(v)) if int(v) != -(2**31) else "(-2147483647 - 1)" for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "{\n    " + ",\n    ".join(lines) + "\n}" if items else "{0}"


class CContext:
    def __init__(self, graph: Graph, plan: MemoryPlan, packs: str = "full") -> None:
        if packs not in PACKS:
            raise ValueError(f"packs {packs!r}: choose one of {', '.join(PACKS)}")
        self.graph = graph
        self.plan = plan
        self.packs = packs
        self.decls: list[str] = []
        self.used_kernels: set[str] = set()
        self._idents: dict[str, str] = {}
        self._taken: set[str] = set()
        self._memo: dict[tuple, str] = {}
        self.trainable = {n.inputs[0] for n in graph.nodes if n.op in UPDATE_OPS}
        self._offsets = {t: b.offset for b in plan.buffers for t in b.tensors}
        self.split = ram_rows(graph)  # weight -> kept rows (RAM); the other rows stay in flash
        self.state_arrays: list[tuple[str, int, str]] = []  # (symbol, bytes, "<tensor>:<kind>"), declaration order

    # --- names ----------------------------------------------------------------------------
    def ident(self, prefix: str, name: str) -> str:
        key = f"{prefix}:{name}"
        if key not in self._idents:
            base = prefix + "_" + re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")
            cand, k = base, 1
            while cand in self._taken:
                k += 1
                cand = f"{base}_{k}"
            self._taken.add(cand)
            self._idents[key] = cand
        return self._idents[key]

    # --- storage ------------------------------------------------------------------------
    def offset(self, tensor: str) -> int:
        return self._offsets[tensor]

    def same_buffer(self, a: str, b: str) -> bool:
        """Whether the planner put two tensors at the same arena offset (an in-place op)."""
        return a in self._offsets and b in self._offsets and self._offsets[a] == self._offsets[b]

    def ptr(self, tensor: str) -> str:
        """C expression of a pointer to the tensor's data."""
        t = self.graph.tensors[tensor]
        ctype = CTYPES[t.dtype]
        if tensor in self._offsets:
            return f"(({ctype} *)(mt_arena.b + {self._offsets[tensor]}))"
        if t.is_const:
            return self.param_array(tensor)
        raise KeyError(f"tensor {tensor!r} has no storage (not planned, not constant)")

    def param_array(self, tensor: str) -> str:
        """The array of a constant tensor: const (flash) if frozen, RAM if trained."""
        key = ("param", tensor)
        if key not in self._memo:
            t = self.graph.tensors[tensor]
            sym = self.ident("P", tensor)
            if tensor in self.split:
                self._split_arrays(tensor, sym)
                return self._memo[key]
            qual = "" if tensor in self.trainable else "const "
            storage = "" if tensor in self.trainable else "static "
            self.decls.append(f"{storage}{qual}{CTYPES[t.dtype]} {sym}[{t.size}] = "
                              f"{c_array_body(t.data, CTYPES[t.dtype])};")
            self._memo[key] = sym
        return self._memo[key]

    def _split_arrays(self, tensor: str, sym: str) -> None:
        """Kept rows in RAM (``sym``, list entry j at row j), frozen rows const, a const row table."""
        t = self.graph.tensors[tensor]
        kept = list(self.split[tensor])
        frozen = [c for c in range(t.shape[0]) if c not in set(kept)]
        rows = np.asarray(t.data).reshape(t.shape[0], -1)
        row = rows.shape[1]
        flash = self.ident("PF", tensor)
        table = self.ident("PR", tensor)
        ctype = CTYPES[t.dtype]
        self.decls.append(f"{ctype} {sym}[{len(kept) * row}] = {c_array_body(rows[kept], ctype)};")
        self.decls.append(f"static const {ctype} {flash}[{len(frozen) * row}] = {c_array_body(rows[frozen], ctype)};")
        where = {c: f"{sym} + {j * row}" for j, c in enumerate(kept)}
        where.update({c: f"{flash} + {j * row}" for j, c in enumerate(frozen)})
        body = ",\n    ".join(where[c] for c in range(t.shape[0]))
        self.decls.append(f"static const {ctype} *const {table}[{t.shape[0]}] = {{\n    {body}\n}};")
        self._memo[("param", tensor)] = sym
        self._memo[("rows", tensor)] = table

    def rows_table(self, tensor: str) -> str | None:
        """The row-pointer table of a split weight, or None if the weight is stored whole."""
        if tensor not in self.split:
            return None
        self.param_array(tensor)
        return self._memo[("rows", tensor)]

    def stored_bytes(self, tensor: str) -> int:
        """RAM bytes of a trained tensor as stored (kept rows only for a split weight)."""
        return stored_bytes(self.graph, tensor, self.split)

    def state_array(self, tensor: str, kind: str, size: int) -> str:
        """The optimizer state buffer ``kind`` ("accum" | "momentum") of a trained tensor: a zeroed
        static float array of ``size`` bytes (RAM, kept across steps; ``mt_init`` clears it)."""
        key = ("state", tensor, kind)
        if key not in self._memo:
            sym = self.ident("S" + kind[0].upper(), tensor)
            self.decls.append(f"static float {sym}[{size // 4}];")
            self._memo[key] = sym
            self.state_arrays.append((sym, size, f"{tensor}:{kind}"))
        return self._memo[key]

    # --- constants ------------------------------------------------------------------------
    def const_array(self, prefix: str, name: str, ctype: str, values) -> str:
        values = np.asarray(values)
        key = (prefix, name, ctype, values.tobytes())
        if key not in self._memo:
            sym = self.ident(prefix, name)
            self.decls.append(f"static const {ctype} {sym}[{values.size}] = {c_array_body(values, ctype)};")
            self._memo[key] = sym
        return self._memo[key]

    def struct(self, ctype: str, prefix: str, name: str, fields: dict) -> str:
        key = (ctype, prefix, name)
        if key not in self._memo:
            sym = self.ident(prefix, name)
            body = ", ".join(f".{k} = {v}" for k, v in fields.items())
            self.decls.append(f"static const {ctype} {sym} = {{{body}}};")
            self._memo[key] = sym
        return self._memo[key]

    def conv_params(self, layer: Node) -> str:
        return self.struct("mt_conv_params", "CP", layer.name, twins.conv_params(layer, self.graph))

    def fc_params(self, layer: Node) -> str:
        return self.struct("mt_fc_params", "FP", layer.name, twins.fc_params(layer, self.graph))

    def requant(self, layer: Node) -> str:
        """The layer's ``mt_per_channel_quant``; a frozen pointwise or depthwise conv's carries its set-up
        pack (where one covers it: runtime/packs.py)."""
        key = ("requant", layer.name)
        if key not in self._memo:
            mult, shift = twins.per_channel_quant(layer, self.graph)
            m = self.const_array("QM", layer.name, "int32_t", mult)
            s = self.const_array("QS", layer.name, "int32_t", shift)
            fields = {"multiplier": m, "shift": s}
            pack = self._pack_kind(layer)
            if pack is not None:
                fields["pack"] = self.conv_pack(layer.name, twins.conv_params(layer, self.graph), mult, shift,
                                                *layer.inputs[1:3], extended=pack)
            self._memo[key] = self.struct("mt_per_channel_quant", "Q", layer.name, fields)
        return self._memo[key]

    def _pack_kind(self, layer: Node) -> int | None:
        """Which set-up pack a standalone conv gets (runtime/packs.py; None: none): a frozen depthwise or
        1x1 its words (0), a 1x1 whose rows the kernel would extend in chunks on every call (longer than
        PW_EXTEND_MAX) also its pre-extended rows (1: 2 bytes per weight), or with a trained bias (the
        words depend on it) the rows alone (2). Trained weights: none (the pack would go stale)."""
        if self.packs == "off" or layer.op != Op.CONV2D or len(layer.inputs) != 3:
            return None
        w, b = layer.inputs[1:3]
        pointwise = is_pointwise(layer, self.graph)
        if w in self.trainable or w in self.split or not (pointwise or is_depthwise(layer, self.graph)):
            return None
        params = twins.conv_params(layer, self.graph)
        long_rows = pointwise and params["in_c"] > PW_EXTEND_MAX and self.extended_rows(layer.name)
        kind = (2 if long_rows else None) if b in self.trainable else (1 if long_rows else 0)
        return kind if kind is not None and packs.conv_pack_size(params, kind) > 0 else None

    def extended_rows(self, key: str) -> bool:
        """Whether 1x1 ``key`` (a standalone conv's name, or "<fused node>:expand" / ":project") gets its
        weight rows pre-extended in its pack (2 bytes per weight of flash). Candidates: the fused blocks'
        1x1 stages (called once per row: they extend their rows on every call) and the standalone 1x1s
        with frozen weights and rows longer than PW_EXTEND_MAX (extended in chunks on every call); the
        ones on maps with the most rows first (the most calls, so the most instructions saved per byte),
        smaller weights first, within EXTENDED_ROWS_BUDGET bytes; none unless packs is "full"."""
        if self.packs != "full":
            return False
        if ("extended_rows",) not in self._memo:
            g = self.graph
            cands = []
            for n in g.nodes:
                if n.op == Op.FUSED_INVERTED_BOTTLENECK:
                    roles = [s["role"] for s in n.attrs["stages"] if s["role"] in ("expand", "depthwise", "project")]
                    for role, w in zip(roles, n.inputs[1::2], strict=True):
                        if role != "depthwise":  # rows: of the block's input (expand), output (project)
                            rows = g.tensors[n.inputs[0] if role == "expand" else n.outputs[0]].shape[1]
                            cands.append((-rows, g.tensors[w].size, f"{n.name}:{role}"))
                elif n.op == Op.CONV2D and len(n.inputs) == 3 and is_pointwise(n, g):
                    w, x = n.inputs[1], g.tensors[n.inputs[0]]
                    if w not in self.trainable and w not in self.split and x.shape[3] > PW_EXTEND_MAX:
                        cands.append((-x.shape[1], g.tensors[w].size, n.name))
            chosen, used = set(), 0
            for _, size, key_ in sorted(cands):
                if used + 2 * size <= EXTENDED_ROWS_BUDGET:
                    chosen.add(key_)
                    used += 2 * size
            self._memo[("extended_rows",)] = chosen
        return key in self._memo[("extended_rows",)]

    def conv_pack(self, name: str, params: dict, mult, shift, weight: str, bias: str | None,
                  extended: int = 0) -> str:
        """The const (flash) array of a frozen conv's set-up pack (runtime/packs.py: mt_conv_pack_s8)."""
        key = ("pack", name)
        if key not in self._memo:
            b = None if bias is None else self.graph.tensors[bias].data
            words = packs.conv_pack(params, mult, shift, self.graph.tensors[weight].data, b, extended)
            self._memo[key] = self.const_array("PK", name, "int32_t", words)
        return self._memo[key]

    def weight_scales(self, weight: str) -> str:
        scales = self.graph.tensors[weight].quant.scales().astype(np.float32)
        return self.const_array("WS", weight, "float", scales)

    def channels(self, name: str, channels, full: int) -> tuple[str, int]:
        """(index array symbol or NULL, count) of a kept-channel list."""
        channels = list(channels)
        if channels == list(range(full)):
            return "NULL", full
        return self.const_array("CH", name, "int32_t", np.asarray(channels, dtype=np.int32)), len(channels)

    def kernel(self, name: str) -> str:
        self.used_kernels.add(name)
        return name
