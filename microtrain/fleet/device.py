"""The two kinds of fleet device and what they share.

A device holds its own samples (they never leave it) and, each round, trains K steps at
batch 1 from the global trained tensors the server sent, with the device's arithmetic (int8
forward, fp32 backward, SGD + QAS on the int8/int32 codes, the device's rounding), and
returns its trained rows. Which samples it trains on in a round and the seed of its
stochastic rounding are pure functions of (fleet seed, device id, round), written once here
(``round_order``, ``device_seed``), so both kinds of device, and any rerun, agree:

* ``SimDevice``: the simulator (``sim/`` + ``train/``), bit-exact with the device's C.
* ``QemuDevice``: the compiled training step running on an emulated Cortex-M7: the global
  tensors go in through the driver's import path (``write_weights`` -> ``mt_weights_in.bin``),
  the trained ones come back through the export path ``microtrain run`` uses
  (``mt_weights.bin`` -> ``read_weights``).

Both run the divergence watch (``train/divergence.py``) over each round's K losses, from a fresh
watch per round: the simulator in Python, the firmware in the driver's C twin, which stops the
run and writes no weights. Either way ``train`` raises ``TrainingDiverged`` naming the step of
the round (0-based), the same step on both.

Rounds count from 1; global step t = (round - 1) * K + k walks the device's samples in a
fresh seeded permutation per pass (pass = t // n).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from microtrain.fleet.update import Manifest
from microtrain.ir.graph import Graph
from microtrain.scheme import UpdateScheme
from microtrain.train.divergence import LossWatch, check_device_run


def device_seed(fleet_seed: int, round_: int, device: int) -> int:
    """Seed of a device's stochastic rounding in a round (31 bits: any C driver reads it)."""
    return int(np.random.SeedSequence([fleet_seed, round_, device, 0x5EED]).generate_state(1)[0]) & 0x7FFFFFFF


def server_seed(fleet_seed: int) -> int:
    """Seed of the server's stochastic requantization (its ``step`` is the round)."""
    return int(np.random.SeedSequence([fleet_seed, 0xA66]).generate_state(1)[0]) & 0x7FFFFFFF


def round_order(n: int, fleet_seed: int, device: int, round_: int, steps: int) -> np.ndarray:
    """Local sample indices of the round's K steps."""
    t = np.arange((round_ - 1) * steps, round_ * steps, dtype=np.int64)
    out = np.empty(steps, dtype=np.int64)
    for p in np.unique(t // n):
        sel = (t // n) == p
        perm = np.random.default_rng([fleet_seed, device, int(p)]).permutation(n)
        out[sel] = perm[t[sel] % n]
    return out


def num_classes(graph: Graph) -> int:
    return int(graph.tensors[graph.outputs[0]].shape[-1])


def compact_codes(cache: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Prefix codes stored in the smallest integer type holding them (int64 in the simulator)."""
    out = {}
    for k, v in cache.items():
        a = v.numpy()
        dtype = np.int8 if (a.size == 0 or (a.min() >= -128 and a.max() <= 127)) else np.int32
        out[k] = a.astype(dtype)
    return out


def take(cache: dict[str, np.ndarray], idx) -> dict[str, torch.Tensor]:
    """The samples ``idx`` of a prefix cache as the simulator's int64 codes (a copy: the cache may be
    a read-only memory map)."""
    return {k: torch.from_numpy(np.array(v[idx], dtype=np.int64)) for k, v in cache.items()}


class SimDevice:
    """Simulated devices of one model and scheme (one instance serves any number of device ids:
    the trained rows are loaded from the server's arrays at the start of every round)."""

    kind = "sim"

    def __init__(self, graph: Graph, scheme: UpdateScheme, rounding: str) -> None:
        from microtrain.train.loop import TrainConfig, Trainer

        self.graph, self.scheme = graph, scheme
        self.manifest = Manifest.build(graph, scheme)
        self.trainer = Trainer(graph, scheme, TrainConfig(optimizer="sgd-qas", batch_size=1, rounding=rounding))

    def prefix(self, x_q: np.ndarray, chunk: int = 256) -> dict[str, np.ndarray]:
        """The frozen prefix's live tensors of every sample (frozen weights never move, so once)."""
        parts = [compact_codes(self.trainer.sim.prefix(x_q[i:i + chunk])) for i in range(0, len(x_q), chunk)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def train(self, arrays: list[np.ndarray], cache: dict[str, np.ndarray], labels: np.ndarray,
              order: np.ndarray, lr: float, seed: int) -> tuple[list[np.ndarray], list[float]]:
        """K = len(order) steps at batch 1 from ``arrays``; returns the trained rows and the losses.
        Raises TrainingDiverged when the watch stops the round."""
        t = self.trainer
        self.manifest.load_into(t.sim, arrays)
        t.int8_opt.seed, t.int8_opt.step_count = int(seed), 0
        watch = LossWatch(num_classes(self.graph))
        one = np.array([0])
        losses = []
        for k, i in enumerate(order):
            y = np.asarray(labels[[int(i)]], dtype=np.int64)
            losses.append(t._step(take(cache, [int(i)]), y, [one], float(lr)))
            watch.update(k, losses[-1], int(y[0]))
        return self.manifest.read_from(t.sim), losses


class QemuDevice:
    """A firmware device: the compiled training step of the fleet's model and scheme on QEMU."""

    kind = "qemu"

    def __init__(self, project: str | Path, graph: Graph, scheme: UpdateScheme, rounding: str, workdir: str | Path,
                 target: str = "qemu") -> None:
        from microtrain.targets import get_target

        self.project, self.workdir = Path(project), Path(workdir)
        self.graph, self.manifest = graph, Manifest.build(graph, scheme)
        check_project(self.project, graph, self.manifest, rounding)
        self.target = get_target(target)
        self.elf = self.target.build(self.project)

    def train(self, arrays: list[np.ndarray], x_q: np.ndarray, labels: np.ndarray, order: np.ndarray, lr: float,
              seed: int) -> tuple[list[np.ndarray], list[float]]:
        from microtrain.codegen.driver_files import read_weights, write_driver_files, write_weights

        y = np.asarray(labels)[order].astype(np.int32)
        work = write_driver_files(self.workdir, x_q[order], y, steps=len(order), lr=lr, seed=seed, weights_in=True)
        write_weights(self.project, self.manifest.full_tensors(self.graph, arrays), work / "mt_weights_in.bin")
        (work / "mt_weights.bin").unlink(missing_ok=True)
        res = self.target.run(self.project, work, elf=self.elf)
        check_device_run(res.stdout, num_classes(self.graph), y)  # the driver's watch stopped it: say so
        if res.weights_path is None:
            raise RuntimeError(f"the firmware wrote no mt_weights.bin in {work}")
        trained = read_weights(self.project, res.weights_path)
        return [np.ascontiguousarray(trained[s.name][list(s.rows)]) for s in self.manifest.slices], list(res.losses)


def check_project(project: Path, graph: Graph, manifest: Manifest, rounding: str) -> None:
    """A compiled project fits the fleet: same trained tensors and rows, same rounding, same frozen
    weights. Raises ValueError naming the first difference."""
    from microtrain.ir import load_graph

    path = project / "report.json"
    if not path.exists():
        raise ValueError(f"{project} is not a compiled project (no report.json); compile the fleet's model and "
                         "scheme with `microtrain compile ... --target cortex-m7`")
    rep = json.loads(path.read_text())
    got = [(t["name"], t["dtype"], tuple(t["channels"]) if t["kind"] == "weight" and t.get("channels") else None)
           for t in rep["trainable"]]
    want = [(s.name, s.dtype, s.rows if s.kind == "weight" else None) for s in manifest.slices]
    if [(n, d) for n, d, _ in got] != [(n, d) for n, d, _ in want]:
        raise ValueError(f"{project} trains {[n for n, _, _ in got]}, the fleet trains {[n for n, _, _ in want]}")
    for (name, _, g_rows), (_, _, w_rows) in zip(got, want, strict=True):
        if w_rows is not None and g_rows is not None and tuple(g_rows) != tuple(w_rows):
            raise ValueError(f"{project}: {name} keeps channels {list(g_rows)}, the fleet's scheme {list(w_rows)}")
    compiled = rep.get("options", {}).get("rounding")
    if compiled != rounding:
        raise ValueError(f"{project} was compiled with {compiled} rounding, the fleet uses {rounding}")
    model = load_graph(project / "model")
    for name, t in graph.tensors.items():
        if t.data is not None and name in model.tensors and not np.array_equal(model.tensors[name].data, t.data):
            raise ValueError(f"{project} was compiled from another model: tensor {name} differs")


def compile_project(graph: Graph, scheme: UpdateScheme, rounding: str, directory: str | Path,
                    target: str = "cortex-m7") -> Path:
    """Compile the fleet's model and scheme into a firmware project for ``QemuDevice`` (the same
    pipeline as ``microtrain compile``, with the fleet's rounding) and build it for ``target``."""
    import microtrain.compiler  # noqa: F401  (registers the training ops)
    from microtrain.codegen.generate_project import generate_project
    from microtrain.compiler.pipeline import CompileOptions, compile_inference, compile_training
    from microtrain.targets import get_target

    step = compile_training(graph, scheme, CompileOptions(rounding=rounding))
    out = generate_project(step, graph, Path(directory), compile_inference(graph))
    get_target(target).build(out)
    return out
