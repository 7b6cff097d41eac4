"""The fleet server: a Flower ``Strategy`` over the int8 sparse update.

One round (``r`` counts from 1 across restarts; Flower's own round counter restarts at 1):

  configure_fit   wait for ``min_devices`` connected devices, learn each one's device id once
                  (``get_properties``), choose the round's devices (all, or a seeded sample of
                  ``per_round`` by id), send each the global trained rows and
                  {round, steps K, lr, fleet seed}
  aggregate_fit   check every reply (``validate.check_update``); log and record each rejection
                  with its reason (a device whose training diverged: with the step) and each
                  device that dropped out; aggregate the accepted ones
                  in real units (``aggregate.py``), requantize with the device's rounding,
                  evaluate on the union test set, append the round to the history, and write
                  the round checkpoint atomically (``checkpoint.py``) before the round counts
                  as completed; with ``keep_updates`` also every accepted update and the global
                  rows they started from (``DIR/updates/round-R/``), an audit trail

A round in which no update is accepted keeps the global tensors and is still a completed round.
Evaluation happens inside ``aggregate_fit`` (before the checkpoint), so a checkpoint always holds
the accuracy of its round; Flower's own ``evaluate`` hooks are unused.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.common import FitIns, GetPropertiesIns, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import Strategy

from microtrain.fleet.aggregate import AggregateConfig, aggregate_real, requantize
from microtrain.fleet.checkpoint import ServerState, save_state
from microtrain.fleet.update import Manifest
from microtrain.fleet.validate import UpdateRejected, check_update

log = logging.getLogger("microtrain.fleet")


class FleetStrategy(Strategy):
    def __init__(self, manifest: Manifest, state: ServerState, *, rounds: int, steps: int, lr: float, seed: int,
                 rounding: str, requant_seed: int, aggregation: AggregateConfig, min_devices: int,
                 per_round: int | None, evaluate: Callable[[list[np.ndarray]], float], checkpoint_dir,
                 signature: dict, wait_timeout: float = 600.0, crash_in_round: int | None = None,
                 keep_updates: bool = False) -> None:
        self.manifest, self.state = manifest, state
        self.rounds, self.steps, self.lr, self.seed = rounds, steps, lr, seed
        self.rounding, self.requant_seed, self.aggregation = rounding, requant_seed, aggregation
        self.min_devices, self.per_round = min_devices, per_round
        self.evaluate_fn, self.checkpoint_dir, self.signature = evaluate, checkpoint_dir, signature
        self.wait_timeout, self.crash_in_round, self.keep_updates = wait_timeout, crash_in_round, keep_updates
        self.start_round = state.round  # Flower's round 1 is our round start_round + 1
        self.devices: dict[str, tuple[int, str]] = {}  # proxy cid -> (device id, kind)
        self.instructed: dict[str, int] = {}  # this round: proxy cid -> device id
        self.round_started = 0.0
        self.down_bytes = 0

    def __repr__(self) -> str:
        return f"FleetStrategy({self.aggregation.rule}, rounds={self.rounds}, K={self.steps})"

    # --- start ----------------------------------------------------------------------------------
    def initialize_parameters(self, client_manager) -> Parameters:
        return ndarrays_to_parameters(self.state.arrays)

    def _identify(self, proxies: dict, group: int) -> None:
        unknown = [(cid, p) for cid, p in proxies.items() if cid not in self.devices]
        if not unknown:
            return

        def ask(item):
            cid, proxy = item
            res = proxy.get_properties(GetPropertiesIns(config={}), timeout=self.wait_timeout, group_id=group)
            return cid, int(res.properties["device"]), str(res.properties.get("kind", "?"))

        with concurrent.futures.ThreadPoolExecutor(max_workers=min(32, len(unknown))) as pool:
            for fut in [pool.submit(ask, item) for item in unknown]:
                try:
                    cid, device, kind = fut.result()
                except Exception as e:  # a device that cannot say who it is takes no part
                    log.warning("a device did not identify itself (%s: %s); it is left out", type(e).__name__, e)
                    continue
                self.devices[cid] = (device, kind)

    # --- a round --------------------------------------------------------------------------------
    def configure_fit(self, server_round: int, parameters: Parameters, client_manager):
        r = self.start_round + server_round
        if not client_manager.wait_for(self.min_devices, timeout=int(self.wait_timeout)):
            raise RuntimeError(f"round {r}: only {client_manager.num_available()} of the {self.min_devices} devices "
                               f"needed connected within {self.wait_timeout:.0f} s")
        proxies = client_manager.all()
        self._identify(proxies, r)
        known = sorted((self.devices[cid][0], cid) for cid in proxies if cid in self.devices)
        ids = [d for d, _ in known]
        if len(set(ids)) != len(ids):
            dup = sorted({d for d in ids if ids.count(d) > 1})
            raise RuntimeError(f"round {r}: two connected devices claim the same device id ({dup})")
        if self.per_round is not None and self.per_round < len(known):
            pick = np.random.default_rng([self.seed, r, 0xC0]).choice(len(known), self.per_round, replace=False)
            known = [known[i] for i in sorted(pick)]
        config = {"round": r, "steps": self.steps, "lr": float(self.lr), "fleet_seed": self.seed}
        self.instructed = {cid: d for d, cid in known}
        self.round_started = time.time()
        self.down_bytes = sum(len(t) for t in parameters.tensors)
        log.info("round %d: %d devices train %d steps each", r, len(known), self.steps)
        return [(proxies[cid], FitIns(parameters, dict(config))) for _, cid in known]

    def aggregate_fit(self, server_round: int, results, failures):
        r = self.start_round + server_round
        if self.crash_in_round == r:  # fault injection: the server dies mid-round, updates received
            log.warning("round %d: killing the server (crash_in_round)", r)
            os.kill(os.getpid(), signal.SIGKILL)
        accepted, rejected, up_bytes = [], [], []
        replied = set()
        for proxy, res in results:
            device = self.instructed.get(proxy.cid, self.devices.get(proxy.cid, (-1, "?"))[0])
            replied.add(proxy.cid)
            try:
                try:
                    arrays = parameters_to_ndarrays(res.parameters)
                except Exception as e:
                    raise UpdateRejected("decode", f"tensors that are not numpy arrays ({type(e).__name__})") from None
                meta = {"manifest": res.metrics.get("manifest"), "round": res.metrics.get("round"),
                        "examples": res.num_examples,
                        **{k: res.metrics[k] for k in ("diverged", "reason", "detail", "lr") if k in res.metrics}}
                arrays, n = check_update(self.manifest, arrays, meta, r, self.steps)
            except UpdateRejected as e:
                log.warning("round %d: rejected the update of device %d: %s", r, device, e)
                rejected.append({"device": device, "check": e.check, "reason": str(e),
                                 **({"step": res.metrics["diverged"]} if e.check == "diverged" else {})})
                continue
            loss = res.metrics.get("loss")  # informative only: anything but a number is ignored
            loss = float(loss) if isinstance(loss, (int, float)) and not isinstance(loss, bool) else math.nan
            accepted.append((device, arrays, n, loss))
            up_bytes.append(sum(len(t) for t in res.parameters.tensors))  # serialized tensors of an accepted update
        dropped = sorted(d for cid, d in self.instructed.items() if cid not in replied)
        for d in dropped:
            log.warning("round %d: device %d dropped out (no reply)", r, d)
        for f in failures:
            if isinstance(f, BaseException):
                log.info("round %d: a device failed: %s: %s", r, type(f).__name__, str(f)[:200])
        accepted.sort(key=lambda a: a[0])
        st = self.state
        if self.keep_updates:
            self._keep(r, st.arrays, accepted)
        if accepted:
            g_real = self.manifest.to_real(st.arrays)
            real, st.momentum = aggregate_real(self.aggregation, [self.manifest.to_real(a) for _, a, _, _ in accepted],
                                               [n for _, _, n, _ in accepted], g_real, st.momentum)
            st.arrays = requantize(self.manifest, real, self.rounding, self.requant_seed, r)
        else:
            log.warning("round %d: no update accepted; the global tensors stay as they were", r)
        accuracy = self.evaluate_fn(st.arrays)
        losses = [loss for _, _, _, loss in accepted if math.isfinite(loss)]
        row = {"round": r, "accuracy": accuracy, "devices": len(self.instructed),
               "accepted": [d for d, _, _, _ in accepted], "rejected": rejected, "dropped": dropped,
               "firmware": sorted(d for d, k in self.devices.values() if k == "qemu" and d in self.instructed.values()),
               "train_loss": float(np.mean(losses)) if losses else None,
               "down_bytes_per_device": self.down_bytes,
               "up_bytes_per_device": int(np.max(up_bytes)) if up_bytes else 0,
               "seconds": time.time() - self.round_started}
        st.history.append(row)
        st.round = r
        save_state(self.checkpoint_dir, st, self.signature)
        log.info("round %d: accuracy %.2f %% (%d accepted, %d rejected, %d dropped)", r, 100 * accuracy,
                 len(accepted), len(rejected), len(dropped))
        return ndarrays_to_parameters(st.arrays), {"accuracy": accuracy}

    def _keep(self, r: int, sent: list[np.ndarray], accepted: list) -> None:
        """The audit trail: DIR/updates/round-R/global.npz (what the devices started from) and
        device-D.npz (each accepted update), arrays a0.. in manifest order."""
        d = Path(self.checkpoint_dir) / "updates" / f"round-{r:04d}"
        d.mkdir(parents=True, exist_ok=True)
        np.savez(d / "global.npz", **{f"a{i}": a for i, a in enumerate(sent)})
        for device, arrays, _, _ in accepted:
            np.savez(d / f"device-{device}.npz", **{f"a{i}": a for i, a in enumerate(arrays)})

    # --- unused Flower hooks: evaluation is done in aggregate_fit ------------------------------
    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None
