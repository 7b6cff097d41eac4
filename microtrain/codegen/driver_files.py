"""The files the generated driver ``mt_main.c`` reads, written from numpy arrays.

``mt_config.txt`` (``key value`` lines; the learning rate both as ``lr_bits``, the float32's bit
pattern in hex, which the driver reads exactly and without strtod, and as ``lr``),
``mt_train_x.bin`` / ``mt_test_x.bin`` (int8 samples back to back), ``mt_train_y.bin`` /
``mt_test_y.bin`` (int32 little-endian), and
``read_weights`` to turn the driver's ``mt_weights.bin`` back into named arrays using the
trained-tensor list of ``report.json`` (a weight stored split, ``stored_rows``, has only its
kept rows in the file: its frozen rows come from the project's model file).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DTYPES = {"int8": np.int8, "int32": np.dtype("<i4"), "float32": np.dtype("<f4"), "uint8": np.uint8}


def write_driver_files(workdir: str | Path, x_train: np.ndarray, y_train: np.ndarray, steps: int, lr: float,
                       seed: int = 0, x_test: np.ndarray | None = None, y_test: np.ndarray | None = None,
                       eval_count: int = 0) -> Path:
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(x_train, dtype=np.int8).tofile(work / "mt_train_x.bin")
    np.ascontiguousarray(y_train, dtype="<i4").tofile(work / "mt_train_y.bin")
    test_n = 0
    if x_test is not None and y_test is not None:
        np.ascontiguousarray(x_test, dtype=np.int8).tofile(work / "mt_test_x.bin")
        np.ascontiguousarray(y_test, dtype="<i4").tofile(work / "mt_test_y.bin")
        test_n = len(y_test)
    (work / "mt_config.txt").write_text(
        f"steps {int(steps)}\nlr_bits {int(np.float32(lr).view(np.uint32)):08x}\nlr {float(np.float32(lr))!r}\n"
        f"seed {int(seed)}\neval {int(eval_count)}\n"
        f"train_count {len(y_train)}\ntest_count {test_n}\n")
    return work


def read_weights(project_dir: str | Path, weights_path: str | Path) -> dict[str, np.ndarray]:
    """Trained tensors from ``mt_weights.bin`` in report.json's ``trainable`` order."""
    doc = json.loads((Path(project_dir) / "report.json").read_text())
    raw = Path(weights_path).read_bytes()
    out, pos = {}, 0
    model = None
    for t in doc["trainable"]:
        n = int(t["bytes"])
        if pos + n > len(raw):
            raise ValueError(f"{weights_path}: {len(raw)} bytes, too short for {t['name']} at offset {pos}")
        rows = t.get("stored_rows")
        shape = list(t["shape"]) if rows is None else [len(rows), *t["shape"][1:]]
        arr = np.frombuffer(raw[pos:pos + n], dtype=DTYPES[t["dtype"]]).reshape(shape).astype(t["dtype"])
        if rows is not None:  # kept rows only: the frozen rows are the model's, unchanged by training
            if model is None:
                from microtrain.ir import load_graph
                model = load_graph(Path(project_dir) / "model")
            full = np.array(model.tensors[t["name"]].data, dtype=t["dtype"]).reshape(t["shape"])
            full[np.asarray(rows, dtype=np.int64)] = arr
            arr = full
        out[t["name"]] = arr
        pos += n
    if pos != len(raw):
        raise ValueError(f"{weights_path}: {len(raw)} bytes, the trained tensors take {pos}")
    return out
