"""``microtrain predict``: table and JSON output, real photographs, clear errors."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from conftest import zoo_path_or_skip
from PIL import Image
from test_zoo_import import tiny_zoo_dict

import microtrain.cli as cli
from microtrain.data.preprocess import preprocess
from microtrain.frontend.mcu_zoo import import_zoo_model
from microtrain.interp.reference import infer


@pytest.fixture(autouse=True)
def only_predict(monkeypatch):
    """Build the parser with this verb alone, so the test does not depend on other verbs' modules."""
    assert "predict" in cli.VERB_MODULES
    monkeypatch.setattr(cli, "VERB_MODULES", ["predict"])


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pkl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(tiny_zoo_dict(1), protocol=2))
    return path


def _save(tmp_path: Path, name: str, arr: np.ndarray) -> str:
    path = tmp_path / name
    Image.fromarray(arr).save(path)
    return str(path)


def test_json_matches_interpreter(tmp_path: Path, tiny_model: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    rgb = _save(tmp_path, "a.png", rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    gray = _save(tmp_path, "b.png", rng.integers(0, 256, (20, 20), dtype=np.uint8))
    assert cli.main(["predict", str(tiny_model), rgb, gray, "--top", "3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["classes"] == 5 and doc["top"] == 3 and [p["image"] for p in doc["predictions"]] == [rgb, gray]
    graph = import_zoo_model(tiny_model)
    q = graph.tensors["classifier.out"].quant
    for pred, path in zip(doc["predictions"], [rgb, gray], strict=True):
        img = np.asarray(Image.open(path).convert("RGB"))
        logits = infer(graph, preprocess(img[None], graph))[0].astype(int)
        want = list(np.argsort(-logits, kind="stable")[:3])
        assert [t["class"] for t in pred["top"]] == want
        assert [t["logit_q"] for t in pred["top"]] == [logits[c] for c in want]
        assert all(abs(t["logit"] - q.s * (t["logit_q"] - q.z)) < 1e-9 for t in pred["top"])
        assert pred["top"][0]["prob"] >= pred["top"][1]["prob"] >= pred["top"][2]["prob"] > 0


def test_table_output(tmp_path: Path, tiny_model: Path, capsys) -> None:
    img = _save(tmp_path, "c.jpg", np.full((16, 16, 3), 200, np.uint8))
    assert cli.main(["predict", str(tiny_model), img, "--top", "9"]) == 0  # K larger than the 5 classes
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert lines[0].split() == ["image", "rank", "class", "logit", "prob"]
    assert len(lines) == 1 + 5 and lines[1].startswith(img)
    assert [int(line.split()[-4]) for line in lines[1:]] == [1, 2, 3, 4, 5]
    assert "predict:" in out.err


def test_unreadable_and_missing_images(tmp_path: Path, tiny_model: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert cli.main(["predict", str(tiny_model), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.png: cannot read it as an image" in err
    assert cli.main(["predict", str(tiny_model), str(tmp_path / "absent.jpg")]) == 2
    assert "absent.jpg: no such image file" in capsys.readouterr().err


def test_bad_model_and_top(tmp_path: Path, tiny_model: Path, capsys) -> None:
    img = _save(tmp_path, "d.png", np.zeros((8, 8, 3), np.uint8))
    assert cli.main(["predict", str(tmp_path / "nope.pkl"), img]) == 2
    assert "nope.pkl: no such file" in capsys.readouterr().err
    assert cli.main(["predict", str(tiny_model), img, "--top", "0"]) == 2
    assert "--top must be at least 1" in capsys.readouterr().err


@pytest.mark.zoo
def test_photos_with_pretrained_model(tmp_path: Path, capsys) -> None:
    zoo_path_or_skip("mcunet-5fps")
    cat = _save(tmp_path, "cat.png", skimage.data.chelsea())
    cup = _save(tmp_path, "coffee.jpg", skimage.data.coffee())
    assert cli.main(["predict", "mcunet-5fps", cat, cup, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["top"] == 5
    cat_top, cup_top = ([t["class"] for t in p["top"]] for p in doc["predictions"])
    assert cat_top[0] in range(281, 286)  # a cat (Egyptian cat 285 here)
    assert {967, 968} & set(cup_top[:1])  # espresso
