"""Datasets: Fashion-MNIST, scikit-learn's digits, and a user's own images.

``load_dataset(name, split, limit, seed) -> Dataset``. A NAME is one of:

  fashion-mnist     the idx files of the Debian package ``dataset-fashion-mnist``
                    (``/usr/share/datasets/fashion-mnist``; ``$MICROTRAIN_FASHION_MNIST``
                    overrides the folder). 60k train / 10k test, 28x28 gray.
  digits            scikit-learn's 8x8 digits (values 0..16 scaled to 0..255).
  path/to/dir       a folder with one sub-folder of images per class (sub-folder names,
                    sorted, are the class names). If it has ``train/`` and ``test/``
                    sub-folders, those are the splits.
  path/to/file.npz  arrays ``images`` (uint8 [N,H,W] or [N,H,W,C], or float in [0,1]) and
                    ``labels`` (integers); optional ``class_names`` (strings).

Splits are ``train``, ``test`` and ``all``. Sources without their own split (digits, a
flat folder, an .npz) are split once, per class, 80 % train / 20 % test with a fixed seed,
so that ``train`` and ``test`` never overlap whatever ``seed`` is. ``limit`` takes a
class-balanced subset chosen with ``seed`` (in the original order).

``check_fits(dataset, graph, new_head=False)`` says whether a dataset can feed a model
(the simulator and fine-tuning call it before they start).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from microtrain.data.preprocess import preprocess_spec
from microtrain.ir.graph import Graph
from microtrain.ir.serialize import read_npz

FASHION_MNIST_DIRS = (Path("/usr/share/datasets/fashion-mnist"), Path("/usr/local/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat",
                         "sandal", "shirt", "sneaker", "bag", "ankle boot"]
SPLITS = ("train", "test", "all")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
MAX_CLASSES = 100_000  # a label beyond this is not a class index (and would size a huge class list)
_SPLIT_SEED = 20221128  # fixed: the train/test split must not move with the user's seed
_TEST_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class Dataset:
    images: np.ndarray
    """uint8 [N,H,W] (gray) or [N,H,W,C]."""
    labels: np.ndarray
    """int64 [N] in [0, num_classes)."""
    num_classes: int
    name: str
    class_names: list[str]
    notes: tuple[str, ...] = ()
    """Conversions made while loading (images resized to a common size, gray/RGB), stated to the user."""

    def __post_init__(self) -> None:
        _validate(self.images, self.labels, self.num_classes, self.name)
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"dataset {self.name!r}: {len(self.class_names)} class names for "
                             f"{self.num_classes} classes")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return 1 if self.images.ndim == 3 else int(self.images.shape[3])

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])


def dataset_names() -> list[str]:
    """The built-in dataset names (a folder or an .npz path is accepted as well)."""
    return ["fashion-mnist", "digits"]


def load_dataset(name: str, split: str = "train", limit: int | None = None, seed: int = 0) -> Dataset:
    """Load ``name`` (see the module doc); ``ValueError``/``FileNotFoundError`` say what is wrong."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if name == "fashion-mnist":
        ds = _fashion_mnist(split)
    elif name == "digits":
        ds = _digits(split)
    else:
        path = Path(name)
        if path.suffix == ".npz":
            ds = _npz(path, split)
        elif path.is_dir():
            ds = _folder(path, split)
        elif path.exists():
            raise ValueError(f"{path}: not a dataset (give a folder of class sub-folders or an .npz)")
        else:
            raise FileNotFoundError(f"unknown dataset {name!r}: give one of {', '.join(dataset_names())}, "
                                    "a folder with one sub-folder of images per class, or an .npz file")
    if limit is not None and limit < len(ds):
        ds = subset(ds, balanced_indices(ds.labels, ds.num_classes, limit, seed))
    return ds


def subset(ds: Dataset, indices: np.ndarray) -> Dataset:
    return dataclasses.replace(ds, images=ds.images[indices], labels=ds.labels[indices])


def balanced_indices(labels: np.ndarray, num_classes: int, limit: int, seed: int) -> np.ndarray:
    """``limit`` indices, as equal per class as the classes allow, chosen with ``seed``; sorted."""
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(labels == c)) for c in range(num_classes)]
    taken = [0] * num_classes
    remaining = limit
    # Round-robin over classes that still have samples: equal shares, the rest spread.
    while remaining > 0:
        open_classes = [c for c in range(num_classes) if taken[c] < len(pools[c])]
        if not open_classes:
            break
        share = max(1, remaining // len(open_classes))
        for c in open_classes:
            add = min(share, len(pools[c]) - taken[c], remaining)
            taken[c] += add
            remaining -= add
            if remaining == 0:
                break
    return np.sort(np.concatenate([pools[c][:taken[c]] for c in range(num_classes)]).astype(np.int64))


def check_fits(ds: Dataset, graph: Graph, new_head: bool = False, training: bool = False) -> list[str]:
    """Check that ``ds`` can feed ``graph``; return notes on the conversions it needs (and
    those made while loading, ``ds.notes``), for the caller to state.

    Images are resized to the model's resolution and converted between gray and RGB by
    ``data.preprocess``, so only 1 or 3 channels are accepted. The dataset's classes must
    fit the model's output (``num_classes <= model classes``) unless ``new_head`` says the
    caller will replace the classifier; for ``training`` they must match it exactly (a
    1000-way head trained on a 10-class task learns the wrong thing). Raises ``ValueError``
    naming the mismatch.
    """
    spec = preprocess_spec(graph)
    notes = list(ds.notes)
    if ds.channels not in (1, 3):
        raise ValueError(f"dataset {ds.name!r} has {ds.channels} channels; only 1 (gray) or 3 (RGB) can be "
                         f"converted to the model's {spec['channels']}")
    if ds.channels != spec["channels"]:
        notes.append(f"channels {ds.channels} -> {spec['channels']}")
    if list(ds.resolution) != list(spec["resolution"]):
        notes.append(f"resize {ds.resolution[0]}x{ds.resolution[1]} -> {spec['resolution'][0]}x{spec['resolution'][1]}")
    model_classes = int(graph.tensors[graph.outputs[0]].shape[-1])
    if ds.num_classes > model_classes and not new_head:
        raise ValueError(f"dataset {ds.name!r} has {ds.num_classes} classes but the model outputs "
                         f"{model_classes}; ask for a new classifier head (--classes {ds.num_classes})")
    if ds.num_classes < model_classes and not new_head and training:
        raise ValueError(f"dataset {ds.name!r} has {ds.num_classes} classes but the model's classifier has "
                         f"{model_classes}: training would fit a {model_classes}-way head to a {ds.num_classes}-class "
                         f"task; give the model a new head with --classes {ds.num_classes}")
    if ds.num_classes < model_classes and not new_head:
        notes.append(f"dataset uses {ds.num_classes} of the model's {model_classes} classes")
    return notes


# --- validation ---------------------------------------------------------------------------

def _validate(images: np.ndarray, labels: np.ndarray, num_classes: int, name: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
        raise ValueError(f"dataset {name!r}: images must be a uint8 array, got "
                         f"{getattr(images, 'dtype', type(images).__name__)}")
    if images.ndim not in (3, 4):
        raise ValueError(f"dataset {name!r}: images must be [N,H,W] or [N,H,W,C], got shape {images.shape}")
    if images.ndim == 4 and images.shape[3] not in (1, 3):
        raise ValueError(f"dataset {name!r}: images have {images.shape[3]} channels in the last axis "
                         "(expected 1 or 3; is the array NCHW? give NHWC)")
    if labels.ndim != 1 or labels.dtype != np.int64:
        raise ValueError(f"dataset {name!r}: labels must be int64 [N], got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"dataset {name!r}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise ValueError(f"dataset {name!r} is empty")
    if num_classes < 1:
        raise ValueError(f"dataset {name!r}: num_classes must be >= 1, got {num_classes}")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"dataset {name!r}: label {int(labels[i])} at index {i} is outside [0, {num_classes})")


def _fixed_split(labels: np.ndarray, split: str, name: str = "the dataset") -> np.ndarray:
    """Per-class 80/20 split with a fixed seed; returns the sorted indices of ``split``.

    A split left empty (too few images per class for a 20 % test share) is a ValueError that
    says so, rather than an "empty dataset" later."""
    if split == "all":
        return np.arange(len(labels))
    rng = np.random.default_rng(_SPLIT_SEED)
    test = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[: int(round(len(idx) * _TEST_FRACTION))])
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[np.concatenate(test)] = True
    chosen = np.flatnonzero(is_test if split == "test" else ~is_test)
    if len(chosen) == 0:
        most = int(np.bincount(labels).max())
        raise ValueError(f"the {split} split of {name!r} has no images: {_TEST_FRACTION:.0%} of each class's images "
                         f"are held out for testing, and its {len(labels)} images (at most {most} per class) leave "
                         f"none; give at least 3 images per class, or use all of them (--split all)")
    return chosen


# --- loaders ------------------------------------------------------------------------------

def fashion_mnist_dir() -> Path:
    env = os.environ.get("MICROTRAIN_FASHION_MNIST")
    candidates = [Path(env)] if env else list(FASHION_MNIST_DIRS)
    for d in candidates:
        if any((d / f"train-images-idx3-ubyte{ext}").exists() for ext in ("", ".gz")):
            return d
    where = ", ".join(str(d) for d in candidates)
    raise FileNotFoundError(f"Fashion-MNIST not found (looked in {where}); it comes from the Debian package "
                            "dataset-fashion-mnist: run `apt-get install dataset-fashion-mnist` "
                            "(or `make setup`), or set MICROTRAIN_FASHION_MNIST to a folder with its idx files")


def read_idx(path: Path) -> np.ndarray:
    """An idx file (optionally .gz) as a numpy array (unsigned byte data only)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # a damaged .gz
        raise ValueError(f"{path}: cannot read it ({type(e).__name__}: {_first_line(e)})") from None
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated idx file")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (magic {raw[:4].hex()})")
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated idx file (header of {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated idx file ({data.size} values for shape {dims})")
    return data.reshape(dims)


def _idx_file(d: Path, stem: str) -> Path:
    for ext in ("", ".gz"):
        if (d / f"{stem}{ext}").exists():
            return d / f"{stem}{ext}"
    raise FileNotFoundError(f"{d}/{stem}[.gz] missing: reinstall dataset-fashion-mnist "
                            "(`apt-get install --reinstall dataset-fashion-mnist`)")


def _fashion_mnist(split: str) -> Dataset:
    d = fashion_mnist_dir()
    parts = ["train", "t10k"] if split == "all" else ["train" if split == "train" else "t10k"]
    images = np.concatenate([read_idx(_idx_file(d, f"{p}-images-idx3-ubyte")) for p in parts])
    labels = np.concatenate([read_idx(_idx_file(d, f"{p}-labels-idx1-ubyte")) for p in parts]).astype(np.int64)
    return Dataset(images, labels, 10, "fashion-mnist", list(FASHION_MNIST_CLASSES))


def _digits(split: str) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    idx = _fixed_split(labels, split, "digits")
    return Dataset(images[idx], labels[idx], 10, "digits", [str(i) for i in range(10)])


def _npz(path: Path, split: str) -> Dataset:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    arrays = read_npz(path, "images and labels")
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)} (has {', '.join(arrays) or 'none'})")
    images, labels, names = arrays["images"], arrays["labels"], arrays.get("class_names")
    if names is not None and (names.ndim != 1 or names.dtype.kind not in "US"):
        raise ValueError(f"{path}: class_names must be a 1-D array of strings, got {names.dtype} {names.shape}")
    try:
        class_names = None if names is None else [str(s) for s in names]
    except (SystemError, ValueError, UnicodeError):  # code points numpy stored but Python refuses
        raise ValueError(f"{path}: class_names holds invalid characters") from None
    images = _to_uint8(images, str(path))
    if images.ndim not in (3, 4):
        raise ValueError(f"dataset {str(path)!r}: images must be [N,H,W] or [N,H,W,C], got shape {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64)
    if labels.size == 0 or images.shape[0] == 0:
        raise ValueError(f"dataset {str(path)!r} is empty")
    if class_names is None and int(labels.max()) >= MAX_CLASSES:
        raise ValueError(f"{path}: label {int(labels.max())} is not a class index (more than {MAX_CLASSES} classes); "
                         "labels must be 0 .. classes-1")
    num_classes = len(class_names) if class_names is not None else max(int(labels.max()) + 1, 1)
    _validate(images, labels, max(num_classes, 1), str(path))
    names = class_names if class_names is not None else [str(i) for i in range(num_classes)]
    idx = _fixed_split(labels, split, str(path))
    return Dataset(images[idx], labels[idx], num_classes, str(path), names)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _to_uint8(images: np.ndarray, name: str) -> np.ndarray:
    if images.dtype == np.uint8:
        return images
    if np.issubdtype(images.dtype, np.floating):
        if images.size and (np.nanmin(images) < 0.0 or np.nanmax(images) > 1.0 or np.isnan(images).any()):
            raise ValueError(f"dataset {name!r}: float images must be in [0, 1]")
        return np.round(images * 255.0).astype(np.uint8)
    raise ValueError(f"dataset {name!r}: images must be uint8 [0,255] or float [0,1], got {images.dtype}")


GRAY_MODES = ("L", "1", "I;16", "I", "F")


def _decode(path: Path):
    """One image file, fully decoded (a truncated file fails here, not later); ValueError names it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except Exception as e:  # noqa: BLE001 - PIL raises many types (OSError, SyntaxError, struct.error, ...)
        raise ValueError(f"{path}: cannot decode this image ({type(e).__name__}: {_first_line(e)}); remove or "
                         "replace the file") from None


def _folder(root: Path, split: str) -> Dataset:
    """A folder of class sub-folders. Every image is decoded here; images of another size than the
    first are resized to it (bilinear) and gray/RGB are unified, each change stated in ``notes``."""
    from PIL import Image

    if split != "all" and (root / "train").is_dir() and (root / "test").is_dir():
        base, own_split = root / split, True
    else:
        base, own_split = root, False
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{base}: no class sub-folders (expected one folder of images per class)")
    pictures, labels = [], []
    for c, cname in enumerate(classes):
        for f in sorted((base / cname).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                pictures.append(_decode(f))
                labels.append(c)
    if not pictures:
        raise ValueError(f"dataset {str(root)!r} is empty: no image files ({', '.join(IMAGE_SUFFIXES)}) "
                         f"in the class folders of {base}")
    gray = all(p.mode in GRAY_MODES for p in pictures)
    mode = "L" if gray else "RGB"
    size = pictures[0].size  # every image is resized to the first one's size (bilinear)
    notes = []
    other_sizes = sorted({f"{p.size[1]}x{p.size[0]}" for p in pictures if p.size != size})
    if other_sizes:
        n = sum(p.size != size for p in pictures)
        notes.append(f"{n} of {len(pictures)} images resized to {size[1]}x{size[0]} (the first image's size) from "
                     f"{', '.join(other_sizes[:5])}{' ...' if len(other_sizes) > 5 else ''}")
    converted = sorted({p.mode for p in pictures if p.mode != mode})
    if converted:
        n = sum(p.mode != mode for p in pictures)
        notes.append(f"{n} of {len(pictures)} images converted to {'gray' if gray else 'RGB'} from mode "
                     f"{', '.join(converted)}")
    arrays = []
    for p in pictures:
        p = p.convert(mode)
        if p.size != size:
            p = p.resize(size, Image.BILINEAR)
        arrays.append(np.asarray(p, dtype=np.uint8))
    images = np.stack(arrays)
    labels_arr = np.asarray(labels, dtype=np.int64)
    idx = np.arange(len(labels_arr)) if own_split else _fixed_split(labels_arr, split, str(root))
    return Dataset(images[idx], labels_arr[idx], len(classes), str(root), classes, tuple(notes))
