"""The files the generated driver ``mt_main.c`` reads, written from numpy arrays.

``mt_config.txt`` (``key value`` lines; the learning rate both as ``lr_bits``, the float32's bit
pattern in hex, which the driver reads exactly and without strtod, and as ``lr``),
``mt_train_x.bin`` / ``mt_test_x.bin`` (int8 samples back to back), ``mt_train_y.bin`` /
``mt_test_y.bin`` (int32 little-endian), and
``read_weights`` to turn the driver's ``mt_weights.bin`` back into named arrays using the
trained-tensor list of ``report.json`` (a weight stored split, ``stored_rows``, has only its
kept rows in the file: its frozen rows come from the project's model file). Its inverse,
``write_weights``, writes named arrays in the same layout as ``mt_weights_in.bin``, which the
driver loads before training when the config says ``weights_in 1`` (``write_driver_files(...,
weights_in=True)``): the import path of trained tensors, as ``read_weights`` is the export path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from microtrain.ir import load_graph

DTYPES = {"int8": np.int8, "int32": np.dtype("<i4"), "float32": np.dtype("<f4"), "uint8": np.uint8}


def write_driver_files(workdir: str | Path, x_train: np.ndarray, y_train: np.ndarray, steps: int, lr: float,
                       seed: int = 0, x_test: np.ndarray | None = None, y_test: np.ndarray | None = None,
                       eval_count: int = 0, weights_in: bool = False, schedule: tuple[str, int, int] | None = None,
                       extra: dict[str, int] | None = None, watch: bool = True) -> Path:
    """Write the driver's inputs. ``schedule`` = (kind, warm-up updates, total updates) sets the
    learning-rate schedule (else the compiled one, with ``lr`` as its base rate); ``extra`` adds
    ``key value`` config lines; ``watch=False`` turns the driver's divergence watch off (tests of
    the arithmetic on purpose-made extreme runs). A ``mt_weights.bin`` left by an earlier run is
    removed, so that a run which writes none (it diverged, or failed) is never read as trained."""
    from microtrain.runtime.schedule import KINDS

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "mt_weights.bin").unlink(missing_ok=True)
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
        f"train_count {len(y_train)}\ntest_count {test_n}\n" + ("weights_in 1\n" if weights_in else "")
        + (f"lr_schedule {KINDS[schedule[0]]}\nwarmup {int(schedule[1])}\ntotal {int(schedule[2])}\n"
           if schedule else "")
        + "".join(f"{k} {int(v)}\n" for k, v in (extra or {}).items())
        + ("" if watch else "watch 0\n"))
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
                model = load_graph(Path(project_dir) / "model")
            full = np.array(model.tensors[t["name"]].data, dtype=t["dtype"]).reshape(t["shape"])
            full[np.asarray(rows, dtype=np.int64)] = arr
            arr = full
        out[t["name"]] = arr
        pos += n
    if pos != len(raw):
        raise ValueError(f"{weights_path}: {len(raw)} bytes, the trained tensors take {pos}")
    return out


def write_weights(project_dir: str | Path, tensors: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write the trained tensors in report.json's ``trainable`` order and layout (the inverse of
    ``read_weights``): every trained tensor must be given, in its full shape and dtype; a split
    weight contributes its ``stored_rows`` only."""
    doc = json.loads((Path(project_dir) / "report.json").read_text())
    parts = []
    for t in doc["trainable"]:
        if t["name"] not in tensors:
            raise ValueError(f"no array for the trained tensor {t['name']}")
        arr = np.asarray(tensors[t["name"]])
        if list(arr.shape) != list(t["shape"]) or arr.dtype != np.dtype(t["dtype"]):
            raise ValueError(f"{t['name']}: {arr.dtype} {list(arr.shape)}, "
                             f"the project trains {t['dtype']} {t['shape']}")
        rows = t.get("stored_rows")
        if rows is not None:
            arr = arr[np.asarray(rows, dtype=np.int64)]
        data = np.ascontiguousarray(arr, dtype=DTYPES[t["dtype"]]).tobytes()
        if len(data) != int(t["bytes"]):
            raise ValueError(f"{t['name']}: {len(data)} bytes, the project stores {t['bytes']}")
        parts.append(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(parts))
    return path


_SAVED = re.compile(r"^checkpoint saved seq (\d+) slot (\d+) samples (\d+) bytes (\d+) pages (\d+) flash_ops (\d+)$",
                    re.M)
_RESTORED = re.compile(r"^checkpoint restored seq (\d+) slot (\d+) samples (\d+)$", re.M)
_IGNORED = re.compile(r"^checkpoint slot (\d+) ignored: (.*)$", re.M)
_CUT = re.compile(r"^power_cut flash_op (\d+) (erase|program) page (\d+)$", re.M)


def parse_checkpoints(stdout: str) -> dict:
    """The checkpoint lines of the driver (``codegen/flash_template.py``): the saves (sequence, slot,
    samples, bytes programmed, pages erased, flash operations since boot at the commit), the restore
    (or None), the slots ignored and why, and the flash operation a power cut stopped (or None)."""
    out = stdout.replace("\r\n", "\n")
    saves = [dict(zip(("seq", "slot", "samples", "bytes", "pages", "flash_ops"), map(int, m), strict=True))
             for m in _SAVED.findall(out)]
    m = _RESTORED.search(out)
    restored = dict(zip(("seq", "slot", "samples"), map(int, m.groups()), strict=True)) if m else None
    cut = _CUT.search(out)
    return {"saves": saves, "restored": restored, "ignored": [(int(k), why) for k, why in _IGNORED.findall(out)],
            "none": "checkpoint none:" in out, "power_cut": int(cut.group(1)) if cut else None}


_PRED = re.compile(r"^pred (\d+) (-?\d+) (-?\d+)$", re.M)


def parse_prequential(stdout: str) -> dict:
    """Prequential evaluation from the driver's ``pred <i> <predicted> <label>`` lines: each sample
    predicted before the model learns from it. ``correct`` per step (0/1), ``running`` the
    accuracy over all samples so far, ``accuracy`` over the whole run."""
    rows = [tuple(map(int, m)) for m in _PRED.findall(stdout.replace("\r\n", "\n"))]
    correct = [int(p == y) for _, p, y in rows]
    running = (np.cumsum(correct) / np.arange(1, len(correct) + 1)).tolist() if correct else []
    return {"steps": [i for i, _, _ in rows], "predicted": [p for _, p, _ in rows], "correct": correct,
            "running": running,
            "accuracy": float(np.mean(correct)) if correct else None}


_SCORE = re.compile(r"^score (\d+) ([0-9a-fA-F]{8})$", re.M)


def parse_scores(stdout: str) -> np.ndarray:
    """The anomaly scores (reconstruction errors, float32) an autoencoder's driver printed."""
    rows = _SCORE.findall(stdout.replace("\r\n", "\n"))
    bits = np.array([int(b, 16) for _, b in sorted(rows, key=lambda r: int(r[0]))], dtype=np.uint32)
    return bits.view(np.float32)
