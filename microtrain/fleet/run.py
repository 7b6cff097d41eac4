"""``serve``: a fleet of devices improves one model together, through a Flower server.

The API's ``microtrain.run_fleet`` resolves the model, head and scheme and calls
``serve(spec, rounds, out, graph, scheme)``, which prepares the run (``setup.prepare``: the
Dirichlet split, the setup every device process reads), restores the last
completed round from ``out/fleet_state.npz`` if a previous run with the same spec was
interrupted, and runs the remaining rounds with one of two transports, both speaking the same
Flower protocol to the same ``FleetStrategy``:

  simulation   Flower's simulation engine (Ray): every device a virtual client, ``workers``
               processes, 10-1000 devices on one machine. Simulated devices only.
  grpc         a Flower server on ``address`` (loopback by default) and one Flower client per
               device connecting to it over gRPC: here in threads of this process, firmware
               devices (QEMU, ``spec.qemu`` of them, running ``project``) and simulated ones
               side by side. The same server takes devices started elsewhere (``run_device``).

Writes ``out/model.json/.npz`` (the fleet's model), ``out/history.json`` and returns a
``FleetResult``. Flower 1.42 marks ``start_simulation``/``start_server``/``start_client``
deprecated in favour of its ``flwr run`` deployment tooling; the strategy and client classes
here are the ones that tooling wraps (``ServerApp(server_fn=...)``, ``ClientApp(client_fn=...)``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

from microtrain.fleet.aggregate import AggregateConfig
from microtrain.fleet.checkpoint import ServerState, load_state
from microtrain.fleet.device import server_seed
from microtrain.fleet.faults import Fault
from microtrain.fleet.setup import FleetSpec, Setup, data_id, prepare, test_split
from microtrain.fleet.update import model_bytes
from microtrain.ir.graph import Graph
from microtrain.scheme import UpdateScheme

log = logging.getLogger("microtrain.fleet")
TRANSPORTS = ("simulation", "grpc")


@dataclasses.dataclass
class FleetResult:
    spec: FleetSpec
    rounds: int
    history: list[dict]
    accuracy: float
    resumed_from: int
    seconds: float
    bytes: dict
    model_file: Path
    transport: str

    def to_dict(self) -> dict:
        return {"spec": self.spec.signature(), "rounds": self.rounds, "accuracy": self.accuracy,
                "resumed_from": self.resumed_from, "seconds": self.seconds, "bytes": self.bytes,
                "model_file": str(self.model_file), "transport": self.transport, "history": self.history}


def check_spec(spec: FleetSpec, rounds: int) -> None:
    """Raise ValueError naming the first setting that cannot work."""
    AggregateConfig(spec.rule, spec.server_lr, spec.server_momentum, spec.trim)
    for name in ("devices", "local_steps"):
        if getattr(spec, name) < 1:
            raise ValueError(f"{name} must be >= 1")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    if not spec.lr > 0:
        raise ValueError("lr must be > 0")
    if not 0 <= spec.qemu <= spec.devices:
        raise ValueError(f"qemu devices ({spec.qemu}) must be between 0 and the fleet's {spec.devices} devices")
    if spec.per_round is not None and not 1 <= spec.per_round <= spec.devices:
        raise ValueError(f"devices per round must be in 1..{spec.devices}")
    for f in spec.faults:
        if Fault.parse(f).device >= spec.devices:
            raise ValueError(f"fault {f!r} names a device the fleet does not have (0..{spec.devices - 1})")


def graph_fingerprint(graph: Graph) -> str:
    """16 hex digits naming a model's structure and constants (a checkpoint of another model is refused)."""
    h = hashlib.sha256()
    for node in graph.nodes:
        h.update(json.dumps([node.name, node.op.value, list(node.inputs), list(node.outputs)]).encode())
    for name in sorted(graph.tensors):
        t = graph.tensors[name]
        h.update(json.dumps([name, list(t.shape), t.dtype]).encode())
        if t.data is not None:
            h.update(np.ascontiguousarray(t.data).tobytes())
    return h.hexdigest()[:16]


def quiet_flower(level: int) -> None:
    """Flower's console log at ``level``, on stderr (stdout stays clean for --json)."""
    import flwr  # noqa: F401  (configures its logger on import)

    for h in logging.getLogger("flwr").handlers:
        h.setLevel(level)
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            h.setStream(sys.stderr)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(spec: FleetSpec, rounds: int, out: str | Path, graph: Graph, scheme: UpdateScheme, *,
          transport: str | None = None,
          workers: int = 2, address: str | None = None, project: str | Path | None = None,
          min_devices: int | None = None, external_devices: bool = False, round_timeout: float | None = None,
          wait_timeout: float = 600.0, crash_in_round: int | None = None,
          keep_updates: bool = False, prefix_cache: str | Path | None = None) -> FleetResult:
    """Run (or resume) a fleet; see the module doc. ``external_devices``: serve on ``address`` and wait for
    devices started elsewhere (``run_device``) instead of starting them here. ``prefix_cache``: a folder where the
    frozen prefix of the training and test splits is kept across runs (``prefix.py``)."""
    from microtrain.fleet.evaluate import Evaluator
    from microtrain.fleet.server import FleetStrategy

    check_spec(spec, rounds)
    transport = transport or ("grpc" if (spec.qemu or external_devices) else "simulation")
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; choose from {', '.join(TRANSPORTS)}")
    if spec.qemu and transport != "grpc":
        raise ValueError("firmware (QEMU) devices connect over the network: use the grpc transport")
    out = Path(out)
    start = time.time()
    setup = prepare(spec, out, graph, scheme, prefix_cache)
    if spec.qemu and project is None and not external_devices:
        from microtrain.fleet.device import compile_project

        log.info("compiling the fleet's training step for the firmware devices into %s", out / "project")
        project = compile_project(setup.graph, setup.scheme, spec.rounding, out / "project")
    test = test_split(spec)
    evaluator = Evaluator(setup.graph, setup.scheme, test.images, test.labels, data_id(spec, "test"), prefix_cache)
    if prefix_cache is not None:  # the devices' share of it, before Ray workers would each compute it
        from microtrain.fleet.device import SimDevice
        from microtrain.fleet.setup import train_prefix

        train_prefix(setup, SimDevice(setup.graph, setup.scheme, spec.rounding).prefix)
    signature = {**spec.signature(), "graph": graph_fingerprint(setup.graph), "manifest": setup.manifest.fingerprint}
    state = load_state(out, signature, setup.manifest)
    if state is None:
        arrays = setup.manifest.extract(setup.graph)
        state = ServerState(0, arrays, None, [{"round": 0, "accuracy": evaluator.accuracy(arrays)}])
    resumed_from = state.round
    if resumed_from:
        log.info("resuming after round %d from %s", resumed_from, out)
    remaining = rounds - state.round
    if remaining > 0:
        strategy = FleetStrategy(
            setup.manifest, state, rounds=rounds, steps=spec.local_steps, lr=spec.lr, seed=spec.seed,
            rounding=spec.rounding, requant_seed=server_seed(spec.seed),
            aggregation=AggregateConfig(spec.rule, spec.server_lr, spec.server_momentum, spec.trim),
            min_devices=min_devices or (spec.per_round or spec.devices), per_round=spec.per_round,
            evaluate=evaluator.accuracy, checkpoint_dir=out, signature=signature, wait_timeout=wait_timeout,
            crash_in_round=crash_in_round, keep_updates=keep_updates)
        if transport == "simulation":
            _simulate(setup, strategy, remaining, workers, round_timeout)
        else:
            _serve(setup, strategy, remaining, address or f"127.0.0.1:{free_port()}", project, external_devices,
                   round_timeout)
        state = strategy.state
    return _finish(setup, state, out, rounds, resumed_from, time.time() - start, transport)


RAY_ATTEMPTS = 3


def start_ray(workers: int, attempts: int = RAY_ATTEMPTS) -> None:
    """Start a local Ray for the simulation engine, trying again when it does not come up in time.

    Ray waits a fixed time for its GCS server to write its port; on a machine whose cores are all
    busy that wait can run out (Ray then raises RuntimeError, or FileNotFoundError when the GCS
    server has not even written its log yet). The GCS port is chosen here (``RAY_GCS_SERVER_PORT``, a free
    loopback port) so that Ray need not wait for it, and a start that still times out (Ray raises
    RuntimeError, OSError or, when the raylet is late, a bare Exception) is shut down and tried again."""
    import ray

    args = {"num_cpus": workers, "include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    for attempt in range(1, attempts + 1):
        saved = os.environ.get("RAY_GCS_SERVER_PORT")
        os.environ.setdefault("RAY_GCS_SERVER_PORT", str(free_port()))
        try:
            ray.init(**args)
            return
        except Exception as e:  # RuntimeError/OSError from GCS; a bare Exception when the raylet is late
            ray.shutdown()
            if attempt == attempts:
                raise RuntimeError(f"Ray did not start in {attempts} attempts ({e})") from None
            log.warning("Ray did not start (%s); trying again", str(e)[:120])
            time.sleep(2.0 * attempt)
        finally:
            if saved is None:
                os.environ.pop("RAY_GCS_SERVER_PORT", None)


def _simulate(setup: Setup, strategy, rounds: int, workers: int, round_timeout: float | None) -> None:
    import flwr as fl
    import ray

    setup_dir = str(setup.directory)

    def client_fn(context):
        from microtrain.fleet.client import make_client

        return make_client(setup_dir, int(context.node_config["partition-id"])).to_client()

    start_ray(workers)
    try:
        fl.simulation.start_simulation(
            client_fn=client_fn, num_clients=setup.spec.devices, strategy=strategy,
            config=fl.server.ServerConfig(num_rounds=rounds, round_timeout=round_timeout),
            client_resources={"num_cpus": 1}, keep_initialised=True,
            ray_init_args={"num_cpus": workers, "include_dashboard": False, "ignore_reinit_error": True})
    finally:
        ray.shutdown()


def _serve(setup: Setup, strategy, rounds: int, address: str, project, external: bool,
           round_timeout: float | None) -> None:
    import flwr as fl

    threads = []
    if not external:
        for device in range(setup.spec.devices):
            t = threading.Thread(target=run_device, args=(setup.directory, device, address, project),
                                 kwargs={"shared_sim": False, "quiet": True}, daemon=True, name=f"device-{device}")
            t.start()
            threads.append(t)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        fl.server.start_server(server_address=address, strategy=strategy,
                               config=fl.server.ServerConfig(num_rounds=rounds, round_timeout=round_timeout))
    finally:
        for s, h in handlers.items():  # start_server installs its own; give the caller's back
            signal.signal(s, h)
    for t in threads:
        t.join(timeout=30)


def run_device(setup_dir: str | Path, device: int, address: str, project: str | Path | None = None,
               shared_sim: bool = True, quiet: bool = False, max_wait: float | None = 600.0,
               reconnects: int = 10) -> None:
    """One device as a Flower client of the server at ``address`` (returns when the server ends the run).
    A device that fails mid-round (fault ``drop``) disconnects, as a device losing power would; a device
    whose server goes away waits for it and connects again (up to ``reconnects`` times): the device holds
    nothing the server needs, so a restarted server simply sends it the next round."""
    import flwr as fl
    import grpc

    from microtrain.fleet.client import make_client
    from microtrain.fleet.faults import DeviceDropout

    client = make_client(setup_dir, device, project, shared_sim=shared_sim)
    for attempt in range(reconnects + 1):
        wait_for_server(address, max_wait or 600.0)
        try:
            fl.client.start_client(server_address=address, client=client.to_client(), insecure=True,
                                   max_wait_time=max_wait)
            return  # the server ended the run
        except DeviceDropout as e:
            if not quiet:
                raise
            log.info("%s", e)
            return
        except grpc.RpcError as e:  # the server went away mid-run: wait for it to come back
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) or attempt == reconnects:
                raise
            log.info("device %d: lost the server (%s); reconnecting", device, e.code().name)
            time.sleep(0.5)


def wait_for_server(address: str, timeout: float) -> None:
    """Block until something listens on ``address`` (Flower's client gives up on a refused first
    connection instead of retrying it)."""
    host, port = address.rsplit(":", 1)
    deadline = time.time() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
                return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"no fleet server listens on {address} (waited {timeout:.0f} s)") from None
            time.sleep(0.2)


def _finish(setup: Setup, state: ServerState, out: Path, rounds: int, resumed_from: int, seconds: float,
            transport: str) -> FleetResult:
    from microtrain.ir import save_graph

    graph = setup.manifest.apply(setup.graph, state.arrays)
    meta = {**graph.meta, "fleet": {"rounds": state.round, "devices": setup.spec.devices, "rule": setup.spec.rule,
                                    "data": setup.spec.data}}
    save_graph(graph.replace(meta=meta), out / "model")
    (out / "history.json").write_text(json.dumps(state.history, indent=1))
    mb = model_bytes(setup.graph)
    payload = setup.manifest.payload_bytes
    wire = [h["up_bytes_per_device"] for h in state.history if h.get("up_bytes_per_device")]
    nbytes = {"payload_bytes_per_device_per_round": payload, "up_bytes_per_device_per_round": max(wire, default=0),
              "down_bytes_per_device_per_round": max((h.get("down_bytes_per_device", 0) for h in state.history),
                                                     default=0), **mb,
              "payload_fraction_of_int8_model": payload / mb["int8_model_bytes"]}
    return FleetResult(setup.spec, state.round, state.history, state.history[-1]["accuracy"], resumed_from, seconds,
                       nbytes, out / "model.json", transport)
