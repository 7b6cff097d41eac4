"""A fleet run's fixed parts, prepared once by the server and read by every device process.

``FleetSpec`` holds everything that determines a run's result (its ``signature``, stored in the
round checkpoint with the fingerprints of the model and the manifest). ``prepare(spec, directory,
graph, scheme)`` takes the model as the API resolved it (new head, resolution, scheme), splits
the training set over the devices (Dirichlet, ``partition.py``) and writes ``DIR/setup/``
(``model.json/.npz``, ``scheme.json``, ``partition.npz``, ``spec.json``). ``load_setup(DIR)``
reads it back in any process (a Ray worker, a device on another machine with the same files),
without redoing the work.

A device's samples: ``device_samples(setup, device)`` -> int8 inputs and labels of its share
of the training split, preprocessed for the model (only that device's images, so a process
serving a few devices never holds the whole dataset at the model's resolution).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from microtrain.fleet.partition import dirichlet_partition
from microtrain.fleet.update import Manifest
from microtrain.ir.graph import Graph
from microtrain.scheme import UpdateScheme

SETUP_DIR = "setup"


@dataclasses.dataclass(frozen=True)
class FleetSpec:
    model: str = "default"
    data: str = "digits"
    classes: int | None = 10  # a new N-class head (None: keep the model's classifier)
    scheme: str = "last-k:2"
    resolution: int | None = None
    devices: int = 10
    alpha: float = 0.1  # Dirichlet concentration of the non-IID split
    local_steps: int = 20  # K: steps per device per round, batch 1
    lr: float = 0.01
    rounding: str = "stochastic"
    rule: str = "fedavg"
    server_lr: float = 1.0
    server_momentum: float = 0.9
    trim: float = 0.2
    per_round: int | None = None  # devices per round (None: all)
    seed: int = 0
    train_limit: int | None = None  # class-balanced subset of the training split before partitioning
    test_limit: int | None = None  # class-balanced subset of the test split for evaluation
    qemu: int = 0  # devices 0..qemu-1 are firmware devices on QEMU
    faults: tuple[str, ...] = ()  # "device:kind@round", see faults.py

    def signature(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Setup:
    spec: FleetSpec
    graph: Graph
    scheme: UpdateScheme
    manifest: Manifest
    parts: list[np.ndarray]  # per device: indices into the (limited) training split
    directory: Path
    prefix_cache: Path | None = None  # shared on-disk prefix codes (``prefix.py``), if any


def _load_train(spec: FleetSpec):
    from microtrain.data.datasets import load_dataset

    return load_dataset(spec.data, "train", limit=spec.train_limit, seed=spec.seed)


def prepare(spec: FleetSpec, directory: str | Path, graph: Graph, scheme: UpdateScheme,
            prefix_cache: str | Path | None = None) -> Setup:
    """Write the setup of a fleet of ``graph`` (with its head and resolution) trained with ``scheme``."""
    from microtrain.data.datasets import check_fits
    from microtrain.ir import save_graph

    if scheme.head != "int8":
        raise ValueError("a fleet trains the int8 classifier the device holds; use a scheme with head 'int8'")
    directory = Path(directory) / SETUP_DIR
    train = _load_train(spec)
    check_fits(train, graph, new_head=False)
    parts = dirichlet_partition(train.labels, spec.devices, spec.alpha, seed=spec.seed)
    directory.mkdir(parents=True, exist_ok=True)
    save_graph(graph, directory / "model")
    scheme.save(directory / "scheme.json")
    np.savez(directory / "partition.npz", **{f"d{i}": p for i, p in enumerate(parts)})
    cache = Path(prefix_cache).resolve() if prefix_cache is not None else None
    (directory / "runtime.json").write_text(json.dumps({"prefix_cache": str(cache) if cache else None}))
    (directory / "spec.json").write_text(json.dumps(spec.signature(), indent=1))  # last: the setup is complete
    return Setup(spec, graph, scheme, Manifest.build(graph, scheme), parts, directory, cache)


def load_setup(directory: str | Path) -> Setup:
    from microtrain.ir import load_graph

    directory = Path(directory)
    if directory.name != SETUP_DIR:
        directory = directory / SETUP_DIR
    doc = json.loads((directory / "spec.json").read_text())
    doc["faults"] = tuple(doc.get("faults", ()))
    spec = FleetSpec(**doc)
    graph = load_graph(directory / "model")
    scheme = UpdateScheme.load(directory / "scheme.json")
    with np.load(directory / "partition.npz", allow_pickle=False) as z:
        parts = [z[f"d{i}"] for i in range(spec.devices)]
    runtime = json.loads((directory / "runtime.json").read_text()) if (directory / "runtime.json").exists() else {}
    cache = Path(runtime["prefix_cache"]) if runtime.get("prefix_cache") else None
    return Setup(spec, graph, scheme, Manifest.build(graph, scheme), parts, directory, cache)


_TRAIN_CACHE: dict[tuple, object] = {}


def data_id(spec: FleetSpec, split: str) -> dict:
    """What identifies a split's images (for the prefix cache key)."""
    limit = spec.train_limit if split == "train" else spec.test_limit
    return {"data": spec.data, "split": split, "limit": limit, "seed": spec.seed if limit else None}


def train_split(spec: FleetSpec):
    """The (limited) training split, loaded once per process."""
    key = (spec.data, spec.train_limit, spec.seed)
    if key not in _TRAIN_CACHE:  # one copy per process, at the dataset's own (small) resolution
        _TRAIN_CACHE.clear()
        _TRAIN_CACHE[key] = _load_train(spec)
    return _TRAIN_CACHE[key]


def train_prefix(setup: Setup, compute) -> dict[str, np.ndarray]:
    """Prefix codes of the whole training split (memory-mapped from the shared cache)."""
    from microtrain.fleet.prefix import prefix_codes

    return prefix_codes(setup.graph, setup.scheme, train_split(setup.spec).images, data_id(setup.spec, "train"),
                        setup.prefix_cache, compute)


def device_samples(setup: Setup, device: int) -> tuple[np.ndarray, np.ndarray]:
    """The device's int8 model inputs and int64 labels, in partition order."""
    from microtrain.data.preprocess import preprocess

    train = train_split(setup.spec)
    idx = setup.parts[device]
    return preprocess(train.images[idx], setup.graph), train.labels[idx].astype(np.int64)


def test_split(spec: FleetSpec):
    """The union test set: the dataset's whole test split (or its class-balanced ``test_limit``)."""
    from microtrain.data.datasets import load_dataset

    return load_dataset(spec.data, "test", limit=spec.test_limit, seed=spec.seed)
