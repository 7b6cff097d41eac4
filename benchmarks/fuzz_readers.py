"""Fuzzing every file reader: a seeded mutator over valid files, each mutant must end in a clean
one-line error or a correct load (never a traceback, a hang, a silent change, or code run).

``READERS`` is the table: one ``Reader`` per file format, with a function that writes a valid
seed (``seed``), the door every verb goes through to read it (``load``), the errors that count
as clean, how its files are mutated (bytes, the JSON structure, the members of a zip or a
pickled structure) and, for a file that still loads, what a correct load means (``check``:
e.g. the loaded model says exactly what the file says and runs). A new reader (.tflite, .onnx)
is one entry.

    python benchmarks/fuzz_readers.py --cases 2000            # every reader, 2000 mutants each
    python benchmarks/fuzz_readers.py --cases 200 --only model-json --no-write

``tests/test_fuzz_readers.py`` runs a bounded number of cases per reader in ``make test``;
a run of the script appends its counts to docs/RESULTS.md (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import pickle
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import results_md

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 20  # a reader that takes longer on a file of a few KB is hung


# --- mutators ----------------------------------------------------------------------------------

INTERESTING = [0, -1, 1, 0.5, -0.5, 1e300, -1e300, 1e-300, 2**31, -(2**31) - 1, 2**63, 10**30, True, False, None,
               "", "x", "NaN", [], {}, [1, 2], {"a": 1}, float("nan"), float("inf"), -float("inf")]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Bit flips, truncation, insertion, deletion, duplication or overwriting with edge bytes."""
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        if not b:
            b = bytearray(rng.randbytes(rng.randint(0, 16)))
            continue
        op = rng.randrange(6)
        i = rng.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            del b[rng.randrange(len(b) + 1):]
        elif op == 2:
            b[i:i] = rng.randbytes(rng.randint(1, 32))
        elif op == 3:
            del b[i:i + rng.randint(1, 64)]
        elif op == 4:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 64)]
        else:
            for k in range(i, min(len(b), i + rng.randint(1, 8))):
                b[k] = rng.choice((0x00, 0xFF, 0x7F, 0x80, 0x01))
    return bytes(b)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) into a nested JSON-like structure."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, (list, tuple)):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if isinstance(parent, tuple):
        return doc  # tuples (in pickled structures) are left alone
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def mutate_structure(doc: Any, rng: random.Random, interesting: list | None = None) -> Any:
    """One to three edits of a nested structure: a leaf or a subtree replaced by an edge value,
    a key or element deleted or duplicated, a number nudged."""
    doc = copy.deepcopy(doc)
    pool = interesting or INTERESTING
    for _ in range(rng.choice((1, 1, 2, 3))):
        paths = _paths(doc)
        path = rng.choice(paths[1:] or paths)
        try:
            node = doc
            for k in path:
                node = node[k]
            op = rng.randrange(5)
            if op == 0 or not path:
                doc = _set(doc, path, copy.deepcopy(rng.choice(pool)))
            elif op == 1:
                doc = _set(doc, path, None, delete=True)
            elif op == 2 and isinstance(node, (int, float)) and not isinstance(node, bool):
                doc = _set(doc, path, node * rng.choice((-1, 0, 2, 1e6, 1e-6)) + rng.choice((0, 1, 0.5)))
            elif op == 3 and isinstance(node, str):
                doc = _set(doc, path, node + rng.choice(("x", "", ".0", "\u00e9")) if rng.random() < 0.5 else "")
            else:  # duplicate a sibling under this key
                doc = _set(doc, path, copy.deepcopy(node) if not isinstance(node, np.ndarray) else node[:0])
        except (KeyError, IndexError, TypeError):
            continue
    return doc


def mutate_json_text(text: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.25:
        return mutate_bytes(text, rng)
    return json.dumps(mutate_structure(json.loads(text), rng)).encode()


def mutate_zip_members(data: bytes, rng: random.Random, member_mutator=mutate_bytes) -> bytes:
    """Mutate the payload of one member and rewrite the archive with valid CRCs, so that the
    change reaches the member's parser instead of the zip checksum (or, 1 in 4, the raw bytes)."""
    if rng.random() < 0.25:
        return mutate_bytes(data, rng)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    k = rng.randrange(len(members))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for j, (name, payload) in enumerate(members):
            zf.writestr(name, member_mutator(payload, rng) if j == k else payload)
    return out.getvalue()


# --- the readers -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Reader:
    name: str
    seed: Callable[[Path], Path]
    """Writes a valid file (set) into a folder; returns the file that is mutated."""
    load: Callable[[Path], Any]
    """Reads it as the verbs do (the argument is the mutated file's path)."""
    errors: tuple[type[BaseException], ...]
    """Errors that count as clean (their message must be one line)."""
    mutate: Callable[[bytes, random.Random], bytes] = mutate_bytes
    check: Callable[[Path, Any], None] | None = None
    """For a file that loads: raise AssertionError if the result is not what the file says."""


def _tiny_graph():
    from microtrain.sim.random_graph import random_graph

    return random_graph(0, resolution=8, channels=1, blocks=1, classes=4)


def _seed_model(folder: Path) -> Path:
    from microtrain.ir import save_graph

    save_graph(_tiny_graph(), folder / "m")
    return folder / "m.json"


def _load_model(path: Path):
    from microtrain.api.models import load_model

    return load_model(path)


def _check_model(path: Path, graph) -> None:
    """The loaded graph says what the .json says (no field truncated or cast) and runs."""
    from microtrain.interp.reference import infer
    from microtrain.ir.serialize import graph_to_dict

    doc = json.loads(path.with_suffix(".json").read_text())
    got = graph_to_dict(graph)
    for t_in, t_out in zip(doc["tensors"], got["tensors"], strict=True):
        for key in ("name", "shape", "dtype", "const", "quant"):
            a, b = t_in.get(key), t_out.get(key)
            if key == "quant" and a is not None:
                a = {k: a.get(k, b.get(k)) for k in ("scale", "zero_point", "axis")}  # axis may be left out
                if isinstance(a["scale"], list) and not any(isinstance(v, bool) for v in a["scale"]):
                    a["scale"] = [float(v) for v in a["scale"]]  # a scale written 1 is the scale 1.0
            assert json.dumps(a) == json.dumps(b), (key, a, b)
    for n_in, n_out in zip(doc["nodes"], got["nodes"], strict=True):
        assert json.dumps([n_in[k] for k in ("name", "op", "inputs", "outputs", "attrs")]) == \
            json.dumps([n_out[k] for k in ("name", "op", "inputs", "outputs", "attrs")])
    x = graph.tensors[graph.inputs[0]]
    infer(graph, np.zeros(x.shape, np.int8))


def _seed_model_npz(folder: Path) -> Path:
    return _seed_model(folder).with_suffix(".npz")


def _tiny_zoo_dict() -> dict:
    rng = np.random.default_rng(0)

    def conv(cin, cout, hw, k, stride, groups, x, y):
        out_hw = (hw + 2 * (k // 2) - k) // stride + 1
        return {"in_channel": cin, "in_shape": hw, "out_channel": cout, "out_shape": out_hw, "kernel_size": (k, k),
                "stride": stride, "groups": groups, "depthwise": groups > 1, "act": None,
                "params": {"weight": rng.integers(-127, 128, (cout, cin // groups, k, k)).astype(np.int8),
                           "bias": rng.integers(-2000, 2000, cout).astype(np.int32),
                           "w_scales": rng.uniform(0.002, 0.01, cout).astype(np.float32),
                           "x_scale": x[0], "x_zero": x[1], "y_scale": y[0], "y_zero": y[1]}}

    q_in, q_relu6, q_a, q_b = (1 / 127.5, 0), (6 / 255, -128), (0.05, 3), (0.06, -5)
    return {"first_conv": conv(3, 4, 8, 3, 2, 1, q_in, q_a),
            "blocks": [{"pointwise1": conv(4, 8, 4, 1, 1, 1, q_a, q_relu6),
                        "depthwise": conv(8, 8, 4, 3, 1, 8, q_relu6, q_relu6),
                        "pointwise2": conv(8, 4, 4, 1, 1, 1, q_relu6, q_b), "residual": None, "se": None}],
            "feature_mix": None,
            "classifier": {k: v for k, v in conv(4, 5, 1, 1, 1, 1, q_b, (0.1, -2)).items()
                           if k in ("in_channel", "out_channel", "kernel_size", "stride", "groups", "params")}}


def _write_zoo(path: Path, d: dict) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(d, protocol=2))
        zf.writestr("archive/version", "3\n")
    return path


def _seed_zoo(folder: Path) -> Path:
    return _write_zoo(folder / "tiny.pkl", _tiny_zoo_dict())


ZOO_INTERESTING = [*INTERESTING, np.zeros(3, np.int8), np.zeros((2, 2), np.float32), np.array([np.nan], np.float32),
                   np.zeros((0,), np.int32), np.full(4, 300, np.int32), (3, 3), (0, 0)]


def _mutate_zoo(data: bytes, rng: random.Random) -> bytes:
    """The pickle stream's bytes, or (half the time) the plain-data structure it holds."""
    def member(payload: bytes, r: random.Random) -> bytes:
        if payload.startswith(b"\x80") and r.random() < 0.5:
            from microtrain.frontend.safe_pickle import safe_loads

            return pickle.dumps(mutate_structure(safe_loads(payload), r, ZOO_INTERESTING), protocol=2)
        return mutate_bytes(payload, r)

    return mutate_zip_members(data, rng, member)


def _seed_scheme(folder: Path) -> Path:
    from microtrain.scheme import make_scheme

    g = _tiny_graph()
    names = [n.name for n in g.weighted_nodes()]
    make_scheme(g, names[-2:], {names[-1]: 1.0, names[-2]: 0.5}, name="seed").save(folder / "scheme.json")
    return folder / "scheme.json"


def _load_scheme(path: Path):
    from microtrain.sparse.presets import load_scheme

    return load_scheme(str(path), _tiny_graph())


def _check_scheme(path: Path, scheme) -> None:
    """The loaded scheme says what the file says (no channel truncated, no name cast)."""
    doc = json.loads(path.read_text())
    got = scheme.to_dict()
    for key, default in (("name", ""), ("head", "int8"), ("bias_layers", []), ("weight_layers", [])):
        want = doc.get(key, default)
        if key == "weight_layers":
            want = [{k: w[k] for k in ("layer", "ratio", "channels")} for w in want]
        assert json.dumps(got[key]) == json.dumps(want), (key, got[key], want)


def _trainer():
    from microtrain.scheme import make_scheme
    from microtrain.train.loop import TrainConfig, Trainer

    g = _tiny_graph()
    names = [n.name for n in g.weighted_nodes()]
    return Trainer(g, make_scheme(g, names[-2:], {names[-1]: 1.0}), TrainConfig(batch_size=4, epochs=1))


def _seed_checkpoint(folder: Path) -> Path:
    from microtrain.train.checkpoint import save_checkpoint

    save_checkpoint(folder / "checkpoint.pt", _trainer(), {"run": "fuzz"})
    return folder / "checkpoint.pt"


def _load_checkpoint(path: Path):
    from microtrain.train.checkpoint import restore

    trainer = _trainer()
    restore(trainer, path, {"run": "fuzz"})
    return trainer


def _check_checkpoint(path: Path, trainer) -> None:
    """A checkpoint that loads restores exactly the saved state (the checksum guarantees it)."""
    import torch

    fresh = _trainer().state_dict()
    got = trainer.state_dict()
    for name, codes in fresh["codes"].items():
        assert torch.equal(codes["w"], got["codes"][name]["w"]) and torch.equal(codes["b"], got["codes"][name]["b"])


def _seed_data_npz(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(folder / "data.npz", images=rng.integers(0, 256, (20, 6, 6)).astype(np.uint8),
             labels=np.arange(20) % 4, class_names=np.array(["a", "b", "c", "d"]))
    return folder / "data.npz"


def _load_dataset(path: Path):
    from microtrain.data.datasets import load_dataset

    return load_dataset(str(path), "all")


def _seed_folder(folder: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = folder / "imgs"
    for i, fmt in enumerate(("png", "bmp", "jpeg", "png", "pgm", "gif")):
        d = root / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (8, 8)).astype(np.uint8), "L").save(d / f"{i}.{fmt}")
    return root / "c1" / "1.bmp"


def _load_folder(path: Path):
    return _load_dataset(path.parent.parent)


def _seed_idx(folder: Path) -> Path:
    import struct

    data = np.random.default_rng(0).integers(0, 256, (5, 4, 4)).astype(np.uint8)
    (folder / "x-idx3-ubyte").write_bytes(struct.pack(">HBB3I", 0, 8, 3, 5, 4, 4) + data.tobytes())
    return folder / "x-idx3-ubyte"


def _load_idx(path: Path):
    from microtrain.data.datasets import read_idx

    return read_idx(path)


def _seed_tflite(folder: Path) -> Path:
    """The int8 Fashion-MNIST CNN of the .tflite tests (tests/fixtures/tflite/PROVENANCE.md)."""
    shutil.copy(ROOT / "tests" / "fixtures" / "tflite" / "fashion_mnist_cnn.tflite", folder / "m.tflite")
    return folder / "m.tflite"


def _check_tflite(path: Path, graph) -> None:
    """A mutated .tflite that still loads is a verified graph that runs."""
    from microtrain.interp.reference import infer

    x = graph.tensors[graph.inputs[0]]
    infer(graph, np.zeros(x.shape, np.int8))


# --- the models a user brings: .onnx and .pt2 (scripts/make_fuzz_fixtures.py made the seeds) ------

FIXTURES = ROOT / "tests" / "fixtures" / "fuzz"
HOSTILE_LOCATIONS = ["/etc/passwd", "../../../../../../../../etc/passwd", "../seed/tiny_qdq.onnx.data",
                     "sub/../../seed/tiny_qdq.onnx.data", "..", ".", "", "/dev/zero", "/proc/self/environ",
                     "tiny_qdq.onnx", "file:///etc/passwd", "tiny_qdq.onnx.data\x00.txt"]
"""External-data locations a hostile .onnx may name: outside its folder, devices, the model itself."""


class RunsCode:
    """Pickled, this is a call of os.system: a hostile file's payload (the audit hook sees it if it runs)."""

    def __reduce__(self):
        import os

        return (os.system, ("true",))


def _load_user_model(path: Path):
    """As `microtrain quantize FILE --out X` reads it (``api.quantize``), or every verb once
    ``microtrain.models.IMPORTERS`` knows the suffix."""
    from microtrain.models import IMPORTERS

    if path.suffix in IMPORTERS:
        return _load_model(path)
    from microtrain.api.quantize import quantize_checkpoint

    return quantize_checkpoint(path, None, None)


def _seed_onnx(folder: Path) -> Path:
    """onnxruntime's QDQ int8 model of a tiny CNN, its conv weight in an external-data file."""
    for name in ("tiny_qdq.onnx", "tiny_qdq.onnx.data"):
        shutil.copy(FIXTURES / name, folder / name)
    return folder / "tiny_qdq.onnx"


ONNX_INTERESTING = [*INTERESTING, *HOSTILE_LOCATIONS, "Loop", "If", "Scan", "QLinearConv", "com.microsoft",
                    "ai.onnx.ml", "EXTERNAL", "RAW", {"key": "location", "value": "/etc/passwd"}, ["-1"], ["0", "0"]]


def _typed(model) -> None:
    """Initializers stored as raw bytes rewritten with their values in the typed fields (the same
    model), so that structure edits reach the numbers."""
    from onnx import TensorProto, helper, numpy_helper

    for t in model.graph.initializer:
        if t.data_location != TensorProto.EXTERNAL and t.raw_data:
            t.CopyFrom(helper.make_tensor(t.name, t.data_type, t.dims, numpy_helper.to_array(t).ravel().tolist()))


def _external(t, rng: random.Random) -> None:
    """The initializer ``t`` made to read its data from a hostile location (maybe with an offset/length)."""
    from onnx import TensorProto

    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data"):
        t.ClearField(field)
    del t.external_data[:]
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": rng.choice(HOSTILE_LOCATIONS)}
    if rng.random() < 0.5:
        entries["offset"] = str(rng.choice((0, 1, 7, 2**40, -1)))
    if rng.random() < 0.5:
        entries["length"] = str(rng.choice((0, 1, 4, 36, 2**40, -5)))
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v


def _mutate_onnx(data: bytes, rng: random.Random) -> bytes:
    """The protobuf's bytes (1 in 5), an initializer's data moved to a hostile location (1 in 6),
    or (otherwise) the model's structure edited as JSON (protobuf's JSON mapping)."""
    import onnx
    from google.protobuf import json_format

    r = rng.random()
    if r < 0.2:
        return mutate_bytes(data, rng)
    model = onnx.ModelProto()
    model.ParseFromString(data)
    if r < 0.37:
        _external(rng.choice(list(model.graph.initializer)), rng)
        return model.SerializeToString()
    _typed(model)
    doc = mutate_structure(json_format.MessageToDict(model), rng, ONNX_INTERESTING)
    try:
        return json_format.ParseDict(doc, onnx.ModelProto()).SerializeToString()
    except (json_format.ParseError, TypeError, ValueError, AttributeError):  # an edit protobuf cannot hold
        return mutate_bytes(model.SerializeToString(), rng)


def _int8_input(graph, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(int8 NHWC input of ``graph``, the same grid values as float NCHW) for an oracle."""
    x = graph.tensors[graph.inputs[0]]
    xq = rng.integers(-128, 128, (4, *x.shape[1:])).astype(np.int8)
    real = (xq.astype(np.float32) - x.quant.z) * np.float32(x.quant.s)
    return xq, (real.transpose(0, 3, 1, 2) if real.ndim == 4 else real)


def _ours(graph, xq: np.ndarray) -> np.ndarray:
    from microtrain.interp.batched import infer_batch

    return infer_batch(graph, xq).reshape(len(xq), -1).astype(np.int64)


def _codes(graph, logits: np.ndarray) -> np.ndarray:
    """The int8 codes of an oracle's dequantized output, on ``graph``'s output grid."""
    q = graph.tensors[graph.outputs[0]].quant
    return np.rint(np.asarray(logits, np.float64).reshape(len(logits), -1) / q.s).astype(np.int64) + q.z


def _onnxruntime(path: Path, real: np.ndarray, optimize: bool) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # its warnings on a mutant (shape info it falls back from) are not errors
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        (inp,) = sess.get_inputs()
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        return np.concatenate([sess.run(None, {inp.name: real[i:i + 1].reshape(shape)})[0]
                               for i in range(len(real))])
    except Exception as e:  # noqa: BLE001 - the oracle's own refusal, at load or run time
        raise AssertionError(f"microtrain loaded a model onnxruntime refuses: {' '.join(str(e).split())[:200]}") \
            from None


def _check_onnx(path: Path, graph) -> None:
    """A mutant that loads reads no data from outside its folder, and computes what onnxruntime
    computes on the same file: every int8 output code within 1 LSB (float32 vs fixed-point
    requantization, benchmarks/onnx_agreement.py) of onnxruntime's integer kernels, or, where
    those assume what the file does not say (a bias scale other than input x weight scale,
    which quantize_static never writes), of onnxruntime running the graph as written (no fusion)."""
    import onnx
    from onnx import TensorProto

    folder = path.parent.resolve()
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            loc = {e.key: e.value for e in t.external_data}.get("location", "")
            real = (folder / loc).resolve()
            assert real.parent == folder and real.is_file(), f"loaded external data {loc!r} from outside {folder}"
    xq, real = _int8_input(graph, np.random.default_rng(0))
    ours = _ours(graph, xq)
    diff = min(int(np.abs(ours - _codes(graph, _onnxruntime(path, real, optimize))).max()) for optimize in (1, 0))
    assert diff <= 1, f"int8 outputs differ from onnxruntime's by {diff} LSB"


def _seed_pt2(folder: Path) -> Path:
    """torchao's PT2E int8 model of the same tiny CNN, saved with torch.export.save."""
    shutil.copy(FIXTURES / "tiny_pt2e.pt2", folder / "tiny_pt2e.pt2")
    return folder / "tiny_pt2e.pt2"


PT2_PICKLE_PLACES = ("weight", "sample-inputs", "tensor-constant", "custom-object", "opaque-object",
                     "opaque-object-in-a-subfolder")


def hostile_pt2(members: list[tuple[str, bytes]], payload: bytes, place: str) -> list[tuple[str, bytes]]:
    """The archive's members with ``payload`` (a pickle) put where ``torch.export.load`` may unpickle:
    a weight or a tensor constant marked ``use_pickle``, the sample inputs, a custom or an opaque
    object (torch tells them by the ``path_name`` of the constants table; in a subfolder, the
    member's own name does not start with the prefix)."""
    from torch.export.pt2_archive.constants import CUSTOM_OBJ_FILENAME_PREFIX, OPAQUE_OBJ_FILENAME_PREFIX

    names = [n for n, _ in members]
    root = names[0].split("/")[0]
    out = dict(members)
    if place == "weight":
        w = sorted(n for n in names if "/data/weights/weight_" in n)[0]
        out[w] = payload
        cfg = f"{root}/data/weights/model_weights_config.json"
        out[cfg] = out[cfg].replace(b'"use_pickle": false', b'"use_pickle": true')
    elif place == "sample-inputs":
        out[f"{root}/data/sample_inputs/model.pt"] = payload
    else:
        file = {"tensor-constant": "tensor_0", "custom-object": f"{CUSTOM_OBJ_FILENAME_PREFIX}0",
                "opaque-object": f"{OPAQUE_OBJ_FILENAME_PREFIX}0",
                "opaque-object-in-a-subfolder": f"{OPAQUE_OBJ_FILENAME_PREFIX}x/payload"}[place]
        out[f"{root}/data/constants/model_constants_config.json"] = json.dumps({"config": {"c": {
            "path_name": file, "is_param": False, "use_pickle": True, "tensor_meta": None}}}).encode()
        out[f"{root}/data/constants/{file}"] = payload
    return list(out.items())


def write_zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, payload in members:
            zf.writestr(name, payload)
    return out.getvalue()


def _mutate_pt2(data: bytes, rng: random.Random) -> bytes:
    """The archive's bytes (1 in 8), a hostile pickle (1 in 8), or one member rewritten (valid
    CRCs): the program's JSON (half of those) or the weights config as JSON structures, any
    other member's bytes."""
    r = rng.random()
    if r < 0.125:
        return mutate_bytes(data, rng)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    if r < 0.25:
        members = hostile_pt2(members, pickle.dumps(RunsCode(), protocol=rng.choice((2, 4))),
                              rng.choice(PT2_PICKLE_PLACES))
    else:
        program = [i for i, (n, _) in enumerate(members) if n.endswith("/models/model.json")]
        k = program[0] if program and rng.random() < 0.5 else rng.randrange(len(members))
        name, payload = members[k]
        members[k] = (name, mutate_json_text(payload, rng) if name.endswith(".json") else mutate_bytes(payload, rng))
    return write_zip(members)


def _check_pt2(path: Path, graph) -> None:
    """A mutant that loads computes what the program in the file computes when PyTorch runs it
    (loaded by torch.export with weights-only unpickling): every int8 output code within 3 LSB,
    the PT2E agreement bound of tests/test_byom_pt2e.py."""
    import torch

    from microtrain.frontend.pt2_file import load_pt2

    module = load_pt2(path).module()
    xq, real = _int8_input(graph, np.random.default_rng(0))
    with torch.no_grad():
        theirs = torch.cat([module(torch.from_numpy(real[i:i + 1].copy())) for i in range(len(real))]).numpy()
    diff = np.abs(_ours(graph, xq) - _codes(graph, theirs))
    assert diff.max() <= 3, f"int8 outputs differ from PyTorch's by {diff.max()} LSB"


def _errors() -> dict[str, tuple[type[BaseException], ...]]:
    from microtrain.errors import UserError
    from microtrain.scheme import SchemeError
    from microtrain.train.checkpoint import CheckpointError

    return {"user": (UserError,), "scheme": (SchemeError,), "checkpoint": (CheckpointError,),
            "data": (ValueError, FileNotFoundError)}


def readers() -> list[Reader]:
    """The table: one entry per file format microtrain reads."""
    err = _errors()
    return [
        Reader("model-json", _seed_model, _load_model, err["user"], mutate_json_text, _check_model),
        Reader("model-npz", _seed_model_npz, _load_model, err["user"], mutate_zip_members,
               lambda p, g: _check_model(p, g)),
        Reader("zoo-pkl", _seed_zoo, _load_model, err["user"], _mutate_zoo),
        Reader("tflite", _seed_tflite, _load_model, err["user"], mutate_bytes, _check_tflite),
        Reader("onnx", _seed_onnx, _load_user_model, err["user"], _mutate_onnx, _check_onnx),
        Reader("pt2", _seed_pt2, _load_user_model, err["user"], _mutate_pt2, _check_pt2),
        Reader("scheme-json", _seed_scheme, _load_scheme, err["scheme"], mutate_json_text, _check_scheme),
        Reader("checkpoint", _seed_checkpoint, _load_checkpoint, err["checkpoint"], mutate_bytes, _check_checkpoint),
        Reader("data-npz", _seed_data_npz, _load_dataset, err["data"], mutate_zip_members),
        Reader("image-folder", _seed_folder, _load_folder, err["data"]),
        Reader("idx", _seed_idx, _load_idx, err["data"]),
    ]


# --- running -----------------------------------------------------------------------------------

class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no answer within {TIMEOUT_S} s")


_RAN: list[str] = []


def _audit(event: str, args: tuple) -> None:
    """Records any attempt to start a program while a file is read (nothing may run)."""
    if event in ("os.system", "subprocess.Popen", "os.exec", "os.spawn", "os.posix_spawn", "os.fork"):
        _RAN.append(f"{event} {str(args)[:80]}")


_AUDITING = False


def fuzz(reader: Reader, cases: int, seed: int = 0, work: Path | None = None) -> dict:
    """Run ``cases`` mutants of ``reader``'s seed file; returns counts and the failures."""
    global _AUDITING
    if not _AUDITING:
        sys.addaudithook(_audit)
        _AUDITING = True
    rng = random.Random(f"{reader.name}:{seed}")
    counts = {"files": 0, "loaded": 0, "refused": 0, "unchanged": 0}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        base = Path(tmp) / "seed"
        base.mkdir()
        target = reader.seed(base)
        original = target.read_bytes()
        seed_result = reader.load(target)  # the seed loads (and imports what the reader needs before the alarm)
        if reader.check is not None:
            reader.check(target, seed_result)
        old = signal.signal(signal.SIGALRM, _alarm)
        try:
            for case in range(cases):
                folder = Path(tmp) / "case"
                shutil.rmtree(folder, ignore_errors=True)
                shutil.copytree(base, folder)
                mutated = reader.mutate(original, rng)
                path = folder / target.relative_to(base)
                path.write_bytes(mutated)
                counts["files"] += 1
                counts["unchanged"] += mutated == original
                _RAN.clear()
                signal.alarm(TIMEOUT_S)
                try:
                    result = reader.load(path)
                    if reader.check is not None:
                        reader.check(path, result)
                    counts["loaded"] += 1
                except reader.errors as e:
                    counts["refused"] += 1
                    if "\n" in str(e).strip() or not str(e).strip():
                        failures.append(f"case {case}: {type(e).__name__} message is not one line: {str(e)[:300]!r}")
                except Hang as e:
                    failures.append(f"case {case}: hang ({e})")
                except Exception as e:  # noqa: BLE001 - anything else is the traceback a user would see
                    failures.append(f"case {case}: {type(e).__name__}: {str(e)[:300]}")
                finally:
                    signal.alarm(0)
                if _RAN:
                    failures.append(f"case {case}: reading the file started a program: {_RAN[0]}")
                if failures and len(failures) >= 20:
                    break
        finally:
            signal.signal(signal.SIGALRM, old)
    return {"reader": reader.name, **counts, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=1000, help="mutants per reader (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None, help="reader names (default: all)")
    results_md.add_flag(p)
    args = p.parse_args(argv)
    rows = []
    start = time.time()
    for reader in readers():
        if args.only and reader.name not in args.only:
            continue
        t0 = time.time()
        r = fuzz(reader, args.cases, args.seed)
        r["seconds"] = round(time.time() - t0, 1)
        rows.append(r)
        print(f"{r['reader']:<14} files {r['files']:>6}  loaded {r['loaded']:>6}  refused {r['refused']:>6}  "
              f"failures {len(r['failures']):>3}  {r['seconds']:>7.1f} s", flush=True)
        for f in r["failures"][:5]:
            print(f"    {f}")
    clean = all(not r["failures"] for r in rows)
    print(f"{'all clean' if clean else 'FAILURES'} in {time.time() - start:.0f} s")
    if not args.no_write:
        _append(rows, args, clean)
    return 0 if clean else 1


def _append(rows: list[dict], args: argparse.Namespace, clean: bool) -> None:
    cmd = results_md.command("benchmarks/fuzz_readers.py", prefix="python")
    lines = [f"## Fuzzing the file readers ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n",
             f"`{cmd}` on {platform.machine()} ({platform.python_version()}), seed {args.seed}. Each mutant is a "
             "seed file changed by the reader's mutator (bit flips, truncation, insertions; JSON or pickled "
             "structure edits; zip members rewritten with valid CRCs); it must load correctly (the check of the "
             "reader) or be refused with a one-line error, within "
             f"{TIMEOUT_S} s, starting no program.\n",
             "| reader | files tried | loaded correctly | refused cleanly | failures |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['reader']} | {r['files']} | {r['loaded']} | {r['refused']} | {len(r['failures'])} |" for r in rows]
    lines.append(f"\n{'All clean.' if clean else 'NOT clean: see the failures printed by the command.'}\n")
    results_md.append("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
