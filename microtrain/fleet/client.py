"""The Flower client of a fleet device: one protocol for simulated and firmware devices.

``FleetClient`` (a Flower ``NumPyClient``) answers two messages:

  get_properties   {"device": id, "kind": "sim" | "qemu"}, once, so the server can name it
  fit              arrays = the global trained rows, config = {round, steps K, lr, fleet_seed};
                   trains K steps at batch 1 on the device's own samples (which samples and the
                   rounding seed from ``device.round_order`` / ``device_seed``) and replies with
                   its trained rows, K (the samples it used) and {round, device, manifest
                   fingerprint, mean loss, kind}; a device whose divergence watch stopped it
                   (``train/divergence.py``, on firmware its C twin) replies with no tensors and
                   {diverged: step, reason, detail, lr}, which the server rejects by name

``make_client(setup_dir, device)`` builds the client of device ``device`` in any process from the
prepared setup (``setup.load_setup``): a ``SimDevice`` shared by all simulated devices of the
process (its trained rows are reloaded every round), the device's prefix cache computed on
first use and kept; or a ``QemuDevice`` for the ids below ``spec.qemu``, given a compiled
project.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.client import NumPyClient

from microtrain.fleet.device import QemuDevice, SimDevice, device_seed, round_order
from microtrain.fleet.faults import apply_fault, faults_for, round_lr
from microtrain.fleet.setup import Setup, device_samples, load_setup, train_prefix, train_split
from microtrain.train.divergence import TrainingDiverged


class FleetClient(NumPyClient):
    def __init__(self, device: int, runner, fingerprint: str, faults: dict[int, str] | None = None) -> None:
        self.device, self.runner, self.fingerprint = device, runner, fingerprint
        self.faults = faults or {}

    def get_properties(self, config):
        return {"device": self.device, "kind": self.runner.kind}

    def get_parameters(self, config):
        raise RuntimeError("a fleet device never initialises the model: the server sends it")

    def fit(self, parameters, config):
        r, steps = int(config["round"]), int(config["steps"])
        lr = round_lr(self.faults.get(r), float(config["lr"]))
        meta = {"round": r, "device": self.device, "manifest": self.fingerprint, "kind": self.runner.kind}
        try:
            arrays, losses = self.runner.train(parameters, r, steps, lr, int(config["fleet_seed"]))
        except TrainingDiverged as e:  # nothing worth aggregating: say why instead
            return [], 0, {**meta, "diverged": e.step, "reason": e.reason, "detail": e.detail, "lr": lr}
        meta["loss"] = float(np.mean(losses)) if losses else float("nan")
        if r in self.faults:
            arrays, steps, meta = apply_fault(self.faults[r], arrays, steps, meta)
        return arrays, steps, meta


class SimRunner:
    kind = "sim"

    def __init__(self, device: int, sim: SimDevice, setup: Setup) -> None:
        self.device, self.sim = device, sim
        if setup.prefix_cache is not None:  # slice the shared prefix of the whole training split
            idx = setup.parts[device]
            self.cache = {k: np.asarray(v[idx]) for k, v in train_prefix(setup, sim.prefix).items()}
            self.labels = train_split(setup.spec).labels[idx].astype(np.int64)
        else:
            x_q, self.labels = device_samples(setup, device)
            self.cache = sim.prefix(x_q)

    def train(self, arrays, round_: int, steps: int, lr: float, fleet_seed: int):
        order = round_order(len(self.labels), fleet_seed, self.device, round_, steps)
        return self.sim.train(arrays, self.cache, self.labels, order, lr, device_seed(fleet_seed, round_, self.device))


class QemuRunner:
    kind = "qemu"

    def __init__(self, device: int, qemu: QemuDevice, setup: Setup) -> None:
        self.device, self.qemu = device, qemu
        self.x_q, self.labels = device_samples(setup, device)

    def train(self, arrays, round_: int, steps: int, lr: float, fleet_seed: int):
        order = round_order(len(self.labels), fleet_seed, self.device, round_, steps)
        return self.qemu.train(arrays, self.x_q, self.labels, order, lr, device_seed(fleet_seed, round_, self.device))


_PROCESS: dict[str, object] = {}  # per process: the loaded setup, one SimDevice, the runners


def make_client(setup_dir: str | Path, device: int, project: str | Path | None = None,
                shared_sim: bool = True) -> FleetClient:
    """The Flower client of ``device`` (cached per process; ``shared_sim=False`` gives the device
    its own simulator, for devices that run concurrently in threads of one process)."""
    import torch

    torch.set_num_threads(1)
    key = str(Path(setup_dir).resolve())
    if _PROCESS.get("key") != key:
        _PROCESS.clear()
        _PROCESS.update(key=key, setup=load_setup(setup_dir), runners={})
    setup: Setup = _PROCESS["setup"]
    runners: dict = _PROCESS["runners"]
    if device not in runners:
        spec = setup.spec
        if not 0 <= device < spec.devices:
            raise ValueError(f"device {device} is not one of the fleet's {spec.devices} devices")
        if device < spec.qemu:
            if project is None:
                raise ValueError(f"device {device} is a firmware device: give the compiled project")
            work = Path(setup.directory).parent / "devices" / f"qemu{device}"
            runners[device] = QemuRunner(device, QemuDevice(project, setup.graph, setup.scheme, spec.rounding, work),
                                         setup)
        else:
            if shared_sim:
                sim = _PROCESS.setdefault("sim", SimDevice(setup.graph, setup.scheme, spec.rounding))
            else:
                sim = SimDevice(setup.graph, setup.scheme, spec.rounding)
            runners[device] = SimRunner(device, sim, setup)
    return FleetClient(device, runners[device], setup.manifest.fingerprint, faults_for(setup.spec.faults, device))
