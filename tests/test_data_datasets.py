"""Dataset loaders: Fashion-MNIST idx files, digits, folders, .npz; limits; validation errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from microtrain.data import datasets
from microtrain.data.datasets import Dataset, balanced_indices, check_fits, dataset_names, load_dataset, read_idx
from microtrain.ir.graph import GraphBuilder, QParams, Tensor
from microtrain.ir.ops import Op


def _write_idx(path, arr: np.ndarray, gz: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    for prefix, n, gz in (("train", 40, True), ("t10k", 20, False)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{'.gz' if gz else ''}",
                   rng.integers(0, 256, (n, 28, 28)), gz)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{'.gz' if gz else ''}", np.arange(n) % 10, gz)
    monkeypatch.setenv("MICROTRAIN_FASHION_MNIST", str(tmp_path))
    return tmp_path


def test_fashion_mnist_from_idx_files_plain_and_gz(fake_fashion):
    train = load_dataset("fashion-mnist", "train")
    test = load_dataset("fashion-mnist", "test")
    both = load_dataset("fashion-mnist", "all")
    assert train.images.shape == (40, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (20, 28, 28)
    assert len(both) == 60 and np.array_equal(both.images[:40], train.images)
    assert train.labels.dtype == np.int64 and list(train.labels[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert train.num_classes == 10 and train.class_names[9] == "ankle boot"
    assert np.array_equal(read_idx(fake_fashion / "t10k-images-idx3-ubyte"), test.images)


def test_fashion_mnist_missing_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROTRAIN_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"dataset-fashion-mnist.*apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


def test_truncated_idx_file_is_refused(tmp_path):
    _write_idx(tmp_path / "x", np.zeros((4, 3, 3)), gz=False)
    (tmp_path / "y").write_bytes((tmp_path / "x").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "y")


@pytest.mark.skipif(not any(d.exists() for d in datasets.FASHION_MNIST_DIRS), reason="dataset-fashion-mnist absent")
def test_real_fashion_mnist_package():
    test = load_dataset("fashion-mnist", "test", limit=100, seed=3)
    assert test.images.shape == (100, 28, 28)
    assert np.bincount(test.labels, minlength=10).tolist() == [10] * 10


def test_digits_split_is_fixed_disjoint_and_complete():
    train, test, every = (load_dataset("digits", s) for s in ("train", "test", "all"))
    assert len(train) + len(test) == len(every) == 1797
    assert every.images.shape == (1797, 8, 8) and every.images.dtype == np.uint8
    assert every.images.max() == 255 and every.images.min() == 0  # 16 -> 255
    assert 0.18 < len(test) / len(every) < 0.22
    again = load_dataset("digits", "test", seed=123)  # the split does not follow the user's seed
    assert np.array_equal(again.images, test.images)


def test_limit_is_class_balanced_and_seeded():
    a = load_dataset("digits", "train", limit=53, seed=0)
    b = load_dataset("digits", "train", limit=53, seed=0)
    c = load_dataset("digits", "train", limit=53, seed=1)
    counts = np.bincount(a.labels, minlength=10)
    assert len(a) == 53 and counts.max() - counts.min() <= 1 + 3  # 5 each, the 3 left spread
    assert counts.min() >= 5
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)


def test_balanced_indices_fills_from_other_classes_when_one_is_short():
    labels = np.array([0] * 2 + [1] * 50)
    idx = balanced_indices(labels, 2, 20, seed=0)
    assert len(idx) == 20 and np.sum(labels[idx] == 0) == 2


def _make_folder(root, classes, n, size=(6, 5), mode="L"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(root / c / f"{i}.png")


def test_folder_of_class_subfolders(tmp_path):
    _make_folder(tmp_path, ["cat", "dog", "ant"], 5)
    every = load_dataset(str(tmp_path), "all")
    assert every.class_names == ["ant", "cat", "dog"] and every.num_classes == 3
    assert every.images.shape == (15, 5, 6)
    train, test = load_dataset(str(tmp_path), "train"), load_dataset(str(tmp_path), "test")
    assert len(train) + len(test) == 15 and len(test) == 3


def test_folder_with_own_train_test_and_rgb(tmp_path):
    _make_folder(tmp_path / "train", ["a", "b"], 3, mode="RGB")
    _make_folder(tmp_path / "test", ["a", "b"], 2, mode="RGB")
    test = load_dataset(str(tmp_path), "test")
    assert test.images.shape == (4, 5, 6, 3) and list(test.labels) == [0, 0, 1, 1]


def test_empty_folder_errors(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="empty"):
        load_dataset(str(tmp_path), "all")
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_dataset(str(tmp_path / "a"), "all")


def test_npz_dataset_and_float_images(tmp_path):
    images = np.random.default_rng(0).random((30, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", images=images, labels=np.arange(30) % 3, class_names=np.array(["x", "y", "z"]))
    ds = load_dataset(str(tmp_path / "d.npz"), "all")
    assert ds.images.dtype == np.uint8 and ds.num_classes == 3 and ds.class_names == ["x", "y", "z"]
    assert np.array_equal(ds.images, np.round(images * 255).astype(np.uint8))


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((3, 4, 4), np.uint8), "labels": np.array([0, 1])}, "3 images but 2 labels"),
    ({"images": np.zeros((0, 4, 4), np.uint8), "labels": np.zeros(0, np.int64)}, "empty"),
    ({"images": np.zeros((3, 4), np.uint8), "labels": np.array([0, 1, 2])}, r"\[N,H,W\]"),
    ({"images": np.zeros((2, 3, 4, 4), np.uint8), "labels": np.array([0, 1])}, "channels"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, -1])}, r"label -1 at index 1 is outside"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, 5]), "class_names": np.array(["a", "b"])},
     r"label 5 at index 1 is outside \[0, 2\)"),
    ({"images": np.zeros((2, 4, 4), np.uint8)}, "missing array"),
    ({"images": np.full((2, 4, 4), 2.0), "labels": np.array([0, 1])}, r"in \[0, 1\]"),
])
def test_npz_validation_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_dataset(str(tmp_path / "bad.npz"), "all")


def test_dataset_dataclass_validates_directly():
    with pytest.raises(ValueError, match="labels must be int64"):
        Dataset(np.zeros((2, 3, 3), np.uint8), np.array([0, 1], np.int32), 2, "x", ["a", "b"])
    with pytest.raises(ValueError, match="class names"):
        Dataset(np.zeros((2, 3, 3), np.uint8), np.array([0, 1]), 2, "x", ["a"])


def test_unknown_name_and_split():
    assert dataset_names() == ["fashion-mnist", "digits"]
    with pytest.raises(FileNotFoundError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("digits", "validation")


def _tiny_graph(classes: int, channels: int = 1):
    b = GraphBuilder()
    q = QParams.per_tensor(1 / 255, -128)
    b.add_input(Tensor("x", (1, 1, 1, channels), "int8", q))
    b.add_tensor(Tensor("f", (1, channels), "int8", q))
    b.add_node("flatten", Op.RESHAPE, ["x"], ["f"], shape=(1, channels))
    w = np.ones((classes, channels), np.int8)
    b.add_tensor(Tensor("w", w.shape, "int8", QParams.per_channel([0.1] * classes), w))
    b.add_tensor(Tensor("b", (classes,), "int32", None, np.zeros(classes, np.int32)))
    b.add_tensor(Tensor("y", (1, classes), "int8", q))
    b.add_node("classifier", Op.FULLY_CONNECTED, ["f", "w", "b"], ["y"])
    return b.build(["y"], {"preprocess": {"resolution": [28, 28], "channels": channels, "range": [0, 1]}})


def test_check_fits():
    digits = load_dataset("digits", "test")
    notes = check_fits(digits, _tiny_graph(10))
    assert notes == ["resize 8x8 -> 28x28"]
    assert "channels 1 -> 3" in check_fits(digits, _tiny_graph(12, channels=3))[0]
    with pytest.raises(ValueError, match="10 classes but the model outputs 5"):
        check_fits(digits, _tiny_graph(5))
    assert check_fits(digits, _tiny_graph(5), new_head=True) == ["resize 8x8 -> 28x28"]
