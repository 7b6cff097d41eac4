"""Fuzzing every file reader (issue 11), bounded for `make test`: for each reader of
benchmarks/fuzz_readers.py, seeded mutants of a valid file must load correctly (the reader's
check) or be refused with a one-line error; no traceback, no hang, no program started. The long
run (thousands of mutants per reader) is `python benchmarks/fuzz_readers.py --cases 2000
--append-results` (docs/RESULTS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import fuzz_readers as fr  # noqa: E402

CASES = {"checkpoint": 25, "image-folder": 40, "tflite": 40}  # the slower readers
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
    fmt_readers = {".pkl": "zoo-pkl", ".tflite": "tflite", ".json": "model-json", ".npz": "model-npz"}
    assert set(IMPORTERS) <= set(fmt_readers) and set(fmt_readers.values()) <= names
    assert {"scheme-json", "checkpoint", "data-npz", "image-folder", "idx"} <= names
