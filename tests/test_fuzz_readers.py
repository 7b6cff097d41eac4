"""Fuzzing every file reader (issue 11), bounded for `make test`: for each reader of
benchmarks/fuzz_readers.py, seeded mutants of a valid file must load correctly (the reader's
check) or be refused with a one-line error; no traceback, no hang, no program started. The long
run (thousands of mutants per reader) is `python benchmarks/fuzz_readers.py --cases 2000
--append-results` (docs/RESULTS.md). Below them, the hostile .onnx and .pt2 files a user might be
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
