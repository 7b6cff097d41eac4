"""``run_fleet`` and ``join_fleet``: fleet learning with Flower (``microtrain/fleet/``).

``run_fleet`` resolves the model, its new head, the resolution and the scheme (as every verb
does, ``api/models.py``), then serves the rounds: simulated devices under Flower's simulation
engine, or, with firmware devices (``qemu``) or ``listen``, a Flower server over gRPC that
devices connect to (``join_fleet`` runs one device of such a fleet in its own process). The
server checkpoints every completed round in ``out``; the same call again resumes after the
last completed round (``restart`` discards the checkpoint).
"""

from __future__ import annotations

from pathlib import Path

from microtrain.api.models import ModelSpec, SchemeSpec, load_model, resolve_scheme, with_head
from microtrain.errors import UserError
from microtrain.fleet.setup import FleetSpec

__all__ = ["FleetSpec", "join_fleet", "run_fleet"]


def run_fleet(model: ModelSpec, data: str, out: str | Path, *, classes: int | None = 10,
              scheme: SchemeSpec = "last-k:2", resolution: int | None = None, devices: int = 10,
              alpha: float = 0.1, rounds: int = 10, local_steps: int = 20, lr: float = 0.01,
              rounding: str = "stochastic", rule: str = "fedavg", server_lr: float = 1.0,
              server_momentum: float = 0.9, trim: float = 0.2, per_round: int | None = None, seed: int = 0,
              train_limit: int | None = None, test_limit: int | None = None, qemu: int = 0,
              project: str | Path | None = None, faults: tuple[str, ...] | list[str] = (),
              transport: str | None = None, workers: int = 2, listen: str | None = None,
              min_devices: int | None = None, round_timeout: float | None = None,
              kill_in_round: int | None = None, keep_updates: bool = False,
              prefix_cache: str | Path | None = None, restart: bool = False):
    """Run (or resume) a fleet of ``devices`` devices on a Dirichlet(``alpha``) split of ``data`` for
    ``rounds`` rounds of ``local_steps`` steps each; returns a ``FleetResult`` (``.history`` per round,
    ``.accuracy``, ``.bytes``, ``.to_dict()`` = the ``fleet --json`` document). ``qemu``: devices
    0..qemu-1 are firmware devices (the step compiled into ``out/project`` unless ``project`` is
    given); ``listen``: serve devices started with ``join_fleet`` instead of starting them here;
    ``faults``: misbehaving devices, ``"DEVICE:KIND@ROUND"``; ``kill_in_round``: the server kills
    itself in that round once the updates arrived (to try resuming); ``keep_updates``: keep every
    accepted update in ``out/updates``; ``prefix_cache``: a folder sharing the frozen prefix
    across runs."""
    from microtrain.fleet.checkpoint import STATE_FILE, CheckpointError
    from microtrain.fleet.run import serve

    spec = FleetSpec(model=str(model) if not hasattr(model, "tensors") else str(model.meta.get("name", "graph")),
                     data=data, classes=classes, scheme=str(scheme) if isinstance(scheme, (str, Path)) else
                     (scheme.name or "scheme"), resolution=resolution, devices=devices, alpha=alpha,
                     local_steps=local_steps, lr=lr, rounding=rounding, rule=rule, server_lr=server_lr,
                     server_momentum=server_momentum, trim=trim, per_round=per_round, seed=seed,
                     train_limit=train_limit, test_limit=test_limit, qemu=qemu, faults=tuple(faults))
    graph = with_head(load_model(model), classes, seed)
    if resolution is not None:
        from microtrain.sim.resolution import with_resolution

        try:
            graph = with_resolution(graph, resolution)
        except ValueError as e:
            raise UserError(f"--resolution {resolution} does not fit the model: {e}") from None
    plan = resolve_scheme(scheme, graph)
    if restart:
        (Path(out) / STATE_FILE).unlink(missing_ok=True)
    try:
        return serve(spec, rounds, out, graph, plan, transport=transport, workers=workers, address=listen,
                     project=project, min_devices=min_devices, external_devices=listen is not None,
                     round_timeout=round_timeout, crash_in_round=kill_in_round, keep_updates=keep_updates,
                     prefix_cache=prefix_cache)
    except CheckpointError as e:
        raise UserError(f"{e} (or pass restart=True / --restart)") from None
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None


def join_fleet(out: str | Path, device: int, server: str, project: str | Path | None = None) -> dict:
    """Run device ``device`` of the fleet served at ``server`` (``host:port``) until the server ends the
    run; ``out`` is the server's output folder (its ``setup/`` describes the fleet), ``project`` the
    compiled step of a firmware device. Reconnects when the server restarts."""
    from microtrain.fleet.run import run_device

    setup = Path(out) / "setup"
    if not (setup / "spec.json").exists():
        raise UserError(f"{setup} is missing: start the server (run_fleet(listen=...) / fleet --listen) "
                        "with the same out folder first")
    try:
        run_device(setup, device, server, project)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise UserError(f"device {device}: {e}") from None
    return {"device": device, "server": server, "done": True}
