"""Fuzzing every file reader (issue 11), bounded for `make test`: for each reader of
benchmarks/fuzz_readers.py, seeded mutants of a valid file must load correctly (the reader's
check) or be refused with a one-line error; no traceback, no hang, no program started. The long
run (thousands of mutants per reader) is `python benchmarks/fuzz_readers.py --cases 2000`
(it appends to docs/RESULTS.md). Below them, the hostile .onnx and .pt2 files a user might be
sent, each refused by `microtrain quantize` in one line with nothing read from outside the model's
folder and nothing run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import fuzz_readers as fr  # noqa: E402

CASES = {"checkpoint": 25, "image-folder": 40, "tflite": 40, "onnx": 40, "pt2": 12}  # the slower readers
DEFAULT_CASES = 60


@pytest.mark.parametrize("reader", fr.readers(), ids=lambda r: r.name)
def test_every_mutant_loads_correctly_or_is_refused_in_one_line(reader, tmp_path):
    result = fr.fuzz(reader, CASES.get(reader.name, DEFAULT_CASES), seed=0, work=tmp_path)
    assert result["failures"] == [], result["failures"][:5]
    assert result["files"] == result["loaded"] + result["refused"]
    assert result["refused"] > 0  # the mutants do reach the reader's checks


def test_the_table_covers_every_model_format_the_verbs_read():
    from microtrain.models import IMPORTERS

    names = {r.name for r in fr.readers()}
    fmt_readers = {".pkl": "zoo-pkl", ".tflite": "tflite", ".json": "model-json", ".npz": "model-npz",
                   ".onnx": "onnx", ".pt2": "pt2"}
    assert set(IMPORTERS) <= set(fmt_readers) and set(fmt_readers.values()) <= names
    assert {"scheme-json", "checkpoint", "data-npz", "image-folder", "idx"} <= names


# --- hostile model files: read nothing outside the model's folder, run nothing -------------------

def _quantize(capsys, model: Path, out: Path) -> tuple[int, str]:
    from microtrain.cli import main

    code = main(["quantize", str(model), "--out", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip()


@pytest.mark.parametrize("where", ["absolute", "dot-dot", "sibling-folder", "symlink-out", "device"])
def test_onnx_external_data_outside_its_folder_is_refused(tmp_path, capsys, where):
    import onnx

    folder = tmp_path / "model"
    folder.mkdir()
    model_path = fr._seed_onnx(folder)
    (tmp_path / "outside.bin").write_bytes((folder / "tiny_qdq.onnx.data").read_bytes())  # valid data, wrong place
    location = {"absolute": "/etc/passwd", "dot-dot": "../../../../../../../../etc/passwd",
                "sibling-folder": "../outside.bin", "symlink-out": "link.bin", "device": "/dev/zero"}[where]
    if where == "symlink-out":
        (folder / "link.bin").symlink_to(tmp_path / "outside.bin")
    model = onnx.load(str(model_path), load_external_data=False)
    (weight,) = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    next(e for e in weight.external_data if e.key == "location").value = location
    onnx.save(model, str(model_path))
    code, err = _quantize(capsys, model_path, tmp_path / "out")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert repr(location) in err and "only files inside the model's folder" in err, err
    assert not (tmp_path / "out.json").exists()


def test_onnx_external_data_next_to_the_model_is_read(tmp_path, capsys):
    fr._seed_onnx(tmp_path)
    code, err = _quantize(capsys, tmp_path / "tiny_qdq.onnx", tmp_path / "out")
    assert code == 0 and (tmp_path / "out.json").exists(), err


class _Marker:
    """Pickled: a call that creates ``path`` (reading a model must never make it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("place", fr.PT2_PICKLE_PLACES)
def test_pt2_with_a_pickle_that_would_run_code_is_refused(tmp_path, capsys, place):
    import pickle
    import zipfile

    payload = pickle.dumps(_Marker(tmp_path / "PWNED"))
    pickle.loads(pickle.dumps(_Marker(tmp_path / "live")))  # the payload is live: unpickled, it runs
    assert (tmp_path / "live").exists()
    with zipfile.ZipFile(fr._seed_pt2(tmp_path)) as zf:
        members = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    evil = tmp_path / "evil.pt2"
    evil.write_bytes(fr.write_zip(fr.hostile_pt2(members, payload, place)))
    code, err = _quantize(capsys, evil, tmp_path / "out")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out.json").exists()


# --- what the fuzzing found, one regression test each: refused in one line, not imported as something else ---

def _edit_onnx(folder: Path, edit) -> Path:
    import onnx

    path = fr._seed_onnx(folder)
    model = onnx.load(str(path), load_external_data=False)
    edit(model)
    onnx.save(model, str(path))
    return path


def _node(model, name: str):
    return next(n for n in model.graph.node if n.name == name)


def _init(model, name: str):
    return next(t for t in model.graph.initializer if t.name == name)


def _rename_attribute(model):  # 'strides' -> 'x': imported with the default stride before
    next(a for a in _node(model, "/conv/Conv").attribute if a.name == "strides").name = "x"


def _short_kernel_shape(model):  # kernel_shape [3] on a 3x3 weight
    a = next(a for a in _node(model, "/conv/Conv").attribute if a.name == "kernel_shape")
    del a.ints[1:]


def _bias_axis_out_of_range(model):  # 4 bias scales along axis 1 of a [4] tensor
    next(a for a in _node(model, "conv.bias_DequantizeLinear").attribute if a.name == "axis").i = 1


def _shifted_inputs(model):  # DequantizeLinear(scale, zero point): float values, an int32 "scale"
    del _node(model, "fc.bias_DequantizeLinear").input[0]


def _tiny_weight_scale(model):  # a weight scale so small the bias is 3e10 units: was clamped to -2^31
    from onnx import numpy_helper

    t = _init(model, "fc.weight_scale")
    s = numpy_helper.to_array(t).copy()
    s[0] = 3.75e-9
    t.CopyFrom(numpy_helper.from_array(s, t.name))


@pytest.mark.parametrize("edit, message", [
    (_rename_attribute, "not a valid ONNX model"), (_short_kernel_shape, "kernel_shape [3]"),
    (_bias_axis_out_of_range, "along axis 1"), (_shifted_inputs, "dequantizes float32 values"),
    (_tiny_weight_scale, "outside int32"),
], ids=lambda v: getattr(v, "__name__", "")[1:] if callable(v) else "")
def test_onnx_mutants_the_fuzzer_found_are_refused(tmp_path, capsys, edit, message):
    code, err = _quantize(capsys, _edit_onnx(tmp_path, edit), tmp_path / "out")
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out.json").exists()


def test_pt2_dequantize_must_undo_its_quantize(tmp_path, capsys):
    """A dequantize whose zero point differs from its quantize's (fuzzed: -128 -> 129) made PyTorch's
    output differ by 81 LSB from the int8 graph that ignored it."""
    import json
    import zipfile

    with zipfile.ZipFile(fr._seed_pt2(tmp_path)) as zf:
        members = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    name, program = next((n, p) for n, p in members if n.endswith("/models/model.json"))
    doc = json.loads(program)
    dq = [n for n in doc["graph_module"]["graph"]["nodes"] if n["target"].endswith("dequantize_per_tensor.default")]
    dq[-1]["inputs"][2]["arg"]["as_int"] = 129  # the zero point of the last activation's dequantize
    evil = tmp_path / "bad.pt2"
    evil.write_bytes(fr.write_zip([(n, json.dumps(doc).encode() if n == name else p) for n, p in members]))
    code, err = _quantize(capsys, evil, tmp_path / "out")
    assert code == 2 and len(err.splitlines()) == 1 and "zero point 129" in err, err
