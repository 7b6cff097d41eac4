"""Lossless serialisation of a Graph: structure as JSON, constant tensors as NPZ.

``save_graph(g, "out/model")`` writes ``out/model.json`` and ``out/model.npz``;
``load_graph`` takes either file name (or the common stem). Floats go through JSON as
Python's shortest round-trip repr, so scales survive bit for bit. The NPZ is read with
``allow_pickle=False``: a model file can never run code. Every problem is a
``ModelFileError`` that says which file and what is wrong, and the loaded graph is
verified before it is returned.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from microtrain.ir.graph import Graph, Node, QParams, Tensor
from microtrain.ir.ops import Op
from microtrain.ir.verify import IRError, verify_graph

FORMAT = "microtrain-graph"
VERSION = 1


class ModelFileError(ValueError):
    """A model file is missing, truncated, malformed or inconsistent."""


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".json", ".npz"):
        p = p.with_suffix("")
    return p.with_suffix(".json"), p.with_suffix(".npz")


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(e) for e in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(e) for k, e in v.items()}
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    return v


def graph_to_dict(graph: Graph) -> dict:
    tensors = []
    for t in graph.tensors.values():
        entry: dict[str, Any] = {"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
                                 "const": t.is_const}
        if t.quant is not None:
            entry["quant"] = {"scale": list(t.quant.scale), "zero_point": list(t.quant.zero_point),
                              "axis": t.quant.axis}
        tensors.append(entry)
    nodes = [{"name": n.name, "op": n.op.value, "inputs": list(n.inputs), "outputs": list(n.outputs),
              "attrs": _jsonable(dict(n.attrs))} for n in graph.nodes]
    return {"format": FORMAT, "version": VERSION, "inputs": list(graph.inputs),
            "outputs": list(graph.outputs), "meta": _jsonable(dict(graph.meta)),
            "tensors": tensors, "nodes": nodes}


def _attr_from_json(v: Any) -> Any:
    # Lists in attrs are tuples in the IR (stride, padding, shape).
    if isinstance(v, list):
        return tuple(_attr_from_json(e) for e in v)
    return v


# The kind of each attribute of the inference ops a model file holds, checked as the file wrote it
# (a padding of 0.5 or a stride of true is refused, never truncated); other attributes are the
# compiler's own and are checked by the verifier.
ATTR_KINDS: dict[str, str] = {
    **dict.fromkeys(("stride", "padding", "groups", "act_min", "act_max", "axis", "filter", "shape"), "int"),
    "beta": "real", "per_tensor_weight": "bool", "activation": "str", "rule": "str",
}


def _check_attr(key: str, v: Any, node: Any) -> None:
    kind = ATTR_KINDS.get(key)
    leaves = v if isinstance(v, list) and kind != "str" else [v]
    ok = {"int": lambda x: isinstance(x, int) and not isinstance(x, bool),
          "real": lambda x: isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x),
          "bool": lambda x: isinstance(x, bool), "str": lambda x: isinstance(x, str)}.get(kind, lambda x: True)
    if not all(ok(x) for x in leaves):
        raise ModelFileError(f"node {node!r}: attribute {key} = {json.dumps(v)[:80]} must be "
                             f"{'integers' if kind == 'int' else 'a finite number' if kind == 'real' else 'a ' + kind}")


def _exact_int(v: Any, what: str) -> int:
    """An integer as the file wrote it: 0.5, true or "3" are refused, never truncated or cast."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ModelFileError(f"{what} is {v!r}, not an integer")
    return v


def _real(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ModelFileError(f"{what} is {v!r}, not a number")
    return float(v)


def _qparams(q: Any, name: str) -> QParams:
    if not isinstance(q, dict) or not isinstance(q.get("scale"), list) or not isinstance(q.get("zero_point"), list):
        raise ModelFileError(f"tensor {name!r}: quant must be an object with scale and zero_point lists")
    axis = q.get("axis")
    return QParams(tuple(_real(s, f"tensor {name!r}: scale") for s in q["scale"]),
                   tuple(_exact_int(z, f"tensor {name!r}: zero point") for z in q["zero_point"]),
                   None if axis is None else _exact_int(axis, f"tensor {name!r}: quant axis"))


def graph_from_dict(doc: dict, arrays: dict[str, np.ndarray], source: str = "<dict>") -> Graph:
    if not isinstance(doc, dict):
        raise ModelFileError(f"{source}: not a microtrain graph (the JSON document is a {type(doc).__name__}, "
                             "expected an object)")
    try:
        if doc.get("format") != FORMAT:
            raise ModelFileError(f"{source}: not a microtrain graph (format={doc.get('format')!r})")
        if doc.get("version") != VERSION:
            raise ModelFileError(f"{source}: unsupported version {doc.get('version')!r}, expected {VERSION}")
        tensors: dict[str, Tensor] = {}
        for e in doc["tensors"]:
            q = e.get("quant")
            quant = None if q is None else _qparams(q, e["name"])
            data = None
            if not isinstance(e["const"], bool) or not isinstance(e["name"], str) or not isinstance(e["dtype"], str):
                raise ModelFileError(f"tensor {e['name']!r}: name and dtype must be strings, const true or false")
            if e["const"]:
                if e["name"] not in arrays:
                    raise ModelFileError(f"{source}: constant tensor {e['name']!r} has no data in the .npz")
                data = arrays[e["name"]]
            if e["name"] in tensors:
                raise ModelFileError(f"{source}: tensor {e['name']!r} is defined twice")
            shape = tuple(_exact_int(d, f"tensor {e['name']!r}: shape entry") for d in e["shape"])
            tensors[e["name"]] = Tensor(e["name"], shape, e["dtype"], quant, data)
        nodes = []
        for n in doc["nodes"]:
            try:
                op = Op(n["op"])
            except ValueError:
                raise ModelFileError(f"{source}: node {n.get('name')!r} has unknown op {n['op']!r}") from None
            if not isinstance(n["name"], str) or not isinstance(n["attrs"], dict):
                raise ModelFileError(f"node {n['name']!r}: name must be a string and attrs an object")
            for k, v in n["attrs"].items():
                _check_attr(k, v, n["name"])
            attrs = {k: _attr_from_json(v) for k, v in n["attrs"].items()}
            for key in ("inputs", "outputs"):
                if not isinstance(n[key], list) or not all(isinstance(s, str) for s in n[key]):
                    raise ModelFileError(f"node {n.get('name')!r}: {key} must be a list of tensor names")
            nodes.append(Node(n["name"], op, tuple(n["inputs"]), tuple(n["outputs"]), attrs))
        for key in ("inputs", "outputs"):
            if not isinstance(doc[key], list) or not all(isinstance(s, str) for s in doc[key]):
                raise ModelFileError(f"graph {key} must be a list of tensor names")
        if not isinstance(doc.get("meta", {}), dict):
            raise ModelFileError("meta must be an object")
        graph = Graph(tensors, tuple(nodes), tuple(doc["inputs"]), tuple(doc["outputs"]), doc.get("meta", {}))
    except ModelFileError as e:
        if str(e).startswith(source):
            raise
        raise ModelFileError(f"{source}: malformed graph document ({e})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        # KeyError: a missing field; the others: a field of the wrong type (e.g. a shape of strings).
        raise ModelFileError(f"{source}: malformed graph document (missing or wrong field: "
                             f"{type(e).__name__} {e})") from None
    try:
        return verify_graph(graph)
    except IRError as e:
        raise ModelFileError(f"{source}: {e}") from None


def save_graph(graph: Graph, path: str | Path) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.npz``; return both paths."""
    verify_graph(graph)
    jpath, npath = _paths(path)
    jpath.parent.mkdir(parents=True, exist_ok=True)
    arrays = {t.name: t.data for t in graph.tensors.values() if t.is_const}
    # Write to temporary names then rename, so an interrupted save never leaves half a model.
    tmp_j, tmp_n = jpath.with_suffix(".json.tmp"), npath.with_suffix(".tmp.npz")
    tmp_j.write_text(json.dumps(graph_to_dict(graph), indent=1))
    _write_npz(tmp_n, arrays)
    tmp_n.replace(npath)
    tmp_j.replace(jpath)
    return jpath, npath


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """What ``np.savez`` writes (one ``<name>.npy`` per array, uncompressed), without passing
    tensor names as keyword arguments: ``np.savez(f, **arrays)`` fails on a tensor named
    ``file`` and silently swallows one named ``allow_pickle``. Object arrays are refused."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)


def read_npz(path: str | Path, what: str = "arrays") -> dict[str, np.ndarray]:
    """Every array of an .npz archive, read without pickles. Anything else (truncated, damaged, a
    member that is not a .npy array, pickled objects, a header numpy's parser rejects in one of its
    many ways) is a ValueError with a one-line message naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            arrays = {}
            for name in z.files:
                arr = z[name]
                if not isinstance(arr, np.ndarray):  # numpy returns raw bytes for a member without the .npy magic
                    raise ValueError(f"member {name!r} is not a .npy array")
                arrays[name] = arr
            return arrays
    except Exception as e:  # noqa: BLE001 - BadZipFile, EOFError, TokenError, SyntaxError, SystemError, MemoryError...
        text = " ".join(str(e).split())[:160] or type(e).__name__
        raise ValueError(f"{path}: cannot read {what} ({type(e).__name__}: {text}); the file is truncated, damaged, "
                         "not an .npz, or holds pickled Python objects (refused: reading never runs code)") from None


def load_graph(path: str | Path) -> Graph:
    jpath, npath = _paths(path)
    for p in (jpath, npath):
        if not p.exists():
            raise ModelFileError(f"{p}: file not found (a microtrain model is a .json and a .npz side by side)")
    try:
        doc = json.loads(jpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        text = " ".join(str(e).split())[:160]
        raise ModelFileError(f"{jpath}: not valid JSON ({type(e).__name__}: {text})") from None
    try:
        arrays = read_npz(npath, "tensor data")
    except ValueError as e:
        raise ModelFileError(str(e)) from None
    return graph_from_dict(doc, arrays, source=str(jpath))
