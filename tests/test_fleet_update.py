"""Fleet learning without Flower: the non-IID split, the wire format of trained rows, the server's
checks of an update (every malformed kind rejected by name), aggregation in real units with the
device's rounding, and the atomic round checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.fleet.aggregate import AggregateConfig, aggregate_real, requantize
from microtrain.fleet.checkpoint import STATE_FILE, CheckpointError, ServerState, load_state, save_state
from microtrain.fleet.device import device_seed, round_order
from microtrain.fleet.faults import CHECK_OF, KINDS, DeviceDropout, Fault, apply_fault
from microtrain.fleet.partition import dirichlet_partition, label_histogram
from microtrain.fleet.update import Manifest, model_bytes
from microtrain.fleet.validate import UpdateRejected, check_update
from microtrain.scheme import make_scheme


@pytest.fixture(scope="module")
def model():
    graph = toy_mbnet(0, size=8, classes=5)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[-3:], {"blocks.1.pointwise1": 0.5, "classifier": 1.0})
    return graph, scheme, Manifest.build(graph, scheme)


# --- the split ------------------------------------------------------------------------------------
def test_dirichlet_partition_covers_every_sample_once_with_equal_sizes():
    labels = np.random.default_rng(0).integers(0, 10, 1437)
    for alpha in (0.1, 1.0):
        parts = dirichlet_partition(labels, 100, alpha, seed=3)
        joined = np.concatenate(parts)
        assert len(joined) == len(labels) and len(np.unique(joined)) == len(labels)
        assert {len(p) for p in parts} <= {14, 15}
        again = dirichlet_partition(labels, 100, alpha, seed=3)
        assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_small_alpha_is_more_skewed():
    labels = np.repeat(np.arange(10), 600)

    def top_share(alpha):
        h = label_histogram(labels, dirichlet_partition(labels, 10, alpha, seed=1), 10)
        return float(np.mean(h.max(1) / h.sum(1)))

    assert top_share(0.1) > 0.5 > top_share(100.0)
    with pytest.raises(ValueError, match="alpha"):
        dirichlet_partition(labels, 10, 0.0)
    with pytest.raises(ValueError, match="fewer devices"):
        dirichlet_partition(labels[:5], 10, 1.0)


def test_round_order_walks_fresh_permutations():
    n, k = 7, 5
    seen = np.concatenate([round_order(n, 0, 3, r, k) for r in (1, 2, 3)])  # 15 steps = 2 passes + 1
    assert sorted(seen[:7]) == list(range(7)) and sorted(seen[7:14]) == list(range(7))
    assert not np.array_equal(round_order(n, 0, 3, 1, k), round_order(n, 0, 4, 1, k))
    assert device_seed(0, 1, 2) != device_seed(0, 2, 1) and 0 <= device_seed(5, 9, 99) < 2**31


# --- the wire format ------------------------------------------------------------------------------
def test_manifest_carries_only_kept_rows(model):
    graph, scheme, m = model
    kept = scheme.weight_update("blocks.1.pointwise1").channels
    by_name = {s.name: s for s in m.slices}
    w = by_name[graph.node("blocks.1.pointwise1").inputs[1]]
    assert w.rows == tuple(kept) and w.shape[0] == len(kept) and w.dtype == "int8"
    arrays = m.extract(graph)
    assert m.payload_bytes == sum(a.nbytes for a in arrays) < model_bytes(graph)["int8_model_bytes"]
    moved = [np.clip(a.astype(np.int64) + 3, -127, 127).astype(a.dtype) for a in arrays]
    g2 = m.apply(graph, moved)
    full = graph.tensors[w.name].data
    frozen = [c for c in range(full.shape[0]) if c not in kept]
    np.testing.assert_array_equal(g2.tensors[w.name].data[frozen], full[frozen])  # frozen rows never move
    assert all(np.array_equal(a, b) for a, b in zip(m.extract(g2), moved, strict=True))
    back = m.to_units(m.to_real(moved))
    assert all(np.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(back, moved, strict=True))


def test_fingerprint_names_the_scheme(model):
    graph, scheme, m = model
    names = [n.name for n in graph.weighted_nodes()]
    other = Manifest.build(graph, make_scheme(graph, names[-3:], {"blocks.1.pointwise1": 1.0, "classifier": 1.0}))
    assert m.fingerprint != other.fingerprint and m.fingerprint == Manifest.build(graph, scheme).fingerprint


def test_flat_index_is_the_rounding_rules_index(model):
    from microtrain.sim.simulator import Simulator
    from microtrain.train.optim import Int8Optimizer

    graph, scheme, m = model
    opt = Int8Optimizer(Simulator(graph, scheme), "sgd", True, "stochastic")
    for i, (s, slot) in enumerate(zip(m.slices, opt.slots, strict=True)):
        assert slot.tensor_id == s.tensor_id
        np.testing.assert_array_equal(m.flat_index(i), slot.index)


# --- the server's checks --------------------------------------------------------------------------
def _honest(m, graph, r=2):
    return m.extract(graph), 5, {"round": r, "manifest": m.fingerprint, "device": 1}


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("drop", "diverge")])  # diverge: below
def test_every_malformed_update_is_rejected_by_name(model, kind):
    graph, _, m = model
    arrays, n, meta = apply_fault(kind, *_honest(m, graph))
    with pytest.raises(UpdateRejected) as e:
        check_update(m, arrays, {**meta, "examples": n}, 2, 5)
    assert e.value.check == CHECK_OF[kind], str(e.value)


def test_honest_update_is_accepted_and_drop_raises(model):
    graph, _, m = model
    arrays, n, meta = _honest(m, graph)
    got, count = check_update(m, arrays, {**meta, "examples": n}, 2, 5)
    assert count == 5 and all(a.dtype == np.dtype(s.dtype) for a, s in zip(got, m.slices, strict=True))
    with pytest.raises(DeviceDropout):
        apply_fault("drop", arrays, n, meta)
    with pytest.raises(ValueError, match="DEVICE:KIND@ROUND"):
        Fault.parse("3-nan")


def test_a_diverging_device_reports_the_step_and_is_rejected_by_name():
    """A device whose lr is 1000x too high (fault ``diverge``) is stopped by the divergence watch of the
    single-device paths at the step the watch names for its losses, sends no tensors, and the server
    rejects its report with the round, the step and the advice to lower the lr; the same device at the
    fleet's lr trains and is accepted."""
    pytest.importorskip("flwr", reason="fleet learning needs flwr (the [fleet] extra)")
    from microtrain.api.models import load_model, resolve_scheme, with_head
    from microtrain.data.datasets import load_dataset
    from microtrain.data.preprocess import preprocess
    from microtrain.fleet.client import FleetClient
    from microtrain.fleet.device import SimDevice, take
    from microtrain.train.divergence import TrainingDiverged, watch_losses

    graph = with_head(load_model("default"), 10, 0)
    scheme = resolve_scheme("last-k:2", graph)
    m = Manifest.build(graph, scheme)
    data = load_dataset("digits", "train", limit=40, seed=0)
    sim = SimDevice(graph, scheme, "stochastic")
    cache, labels = sim.prefix(preprocess(data.images, graph)), data.labels.astype(np.int64)

    class Runner:  # a simulated device on its 40 samples
        kind = "sim"

        def train(self, arrays, round_, steps, lr, fleet_seed):
            return sim.train(arrays, cache, labels, np.arange(steps) % len(labels), lr, device_seed(0, round_, 7))

    steps, lr = 32, 0.02
    with pytest.raises(TrainingDiverged) as stopped:
        Runner().train(m.extract(graph), 1, steps, lr * 1000, 0)
    m.load_into(sim.trainer.sim, m.extract(graph))  # the same steps without the watch: all their losses
    sim.trainer.int8_opt.seed, sim.trainer.int8_opt.step_count = device_seed(0, 1, 7), 0
    losses = [sim.trainer._step(take(cache, [i]), labels[[i]], [np.array([0])], lr * 1000) for i in range(steps)]
    with pytest.raises(TrainingDiverged) as watched:
        watch_losses(losses, 10, [int(y) for y in labels[:steps]])
    assert watched.value.step == stopped.value.step < steps
    client = FleetClient(7, Runner(), m.fingerprint, {1: "diverge"})
    config = {"round": 1, "steps": steps, "lr": lr, "fleet_seed": 0}
    arrays, n, meta = client.fit(m.extract(graph), config)
    assert arrays == [] and n == 0 and meta["diverged"] == stopped.value.step and meta["lr"] == lr * 1000
    with pytest.raises(UpdateRejected) as e:
        check_update(m, arrays, {**meta, "examples": n}, 1, steps)
    assert e.value.check == CHECK_OF["diverge"] == "diverged"
    assert f"diverged at step {stopped.value.step} of round 1" in str(e.value)
    assert "lower the learning rate" in str(e.value)
    arrays, n, meta = client.fit(m.extract(graph), {**config, "round": 2})  # no fault in round 2
    assert "diverged" not in meta and n == steps
    check_update(m, arrays, {**meta, "examples": n}, 2, steps)


def test_values_outside_the_device_types_are_rejected(model):
    graph, _, m = model
    arrays, n, meta = _honest(m, graph)
    meta = {**meta, "examples": n}
    for bad, check in ((np.clip(arrays[0], -100, 100).astype(np.float64) + 0.5, "integral"),
                       (arrays[0].astype(np.int16), "dtype"),
                       (arrays[0].astype(np.int64) - 300, "range"),
                       (np.array(arrays[0], dtype=object), "dtype")):
        with pytest.raises(UpdateRejected) as e:
            check_update(m, [bad, *arrays[1:]], meta, 2, 5)
        assert e.value.check == check
    with pytest.raises(UpdateRejected, match="examples"):
        check_update(m, arrays, {**meta, "examples": 0}, 2, 5)


# --- aggregation ----------------------------------------------------------------------------------
def test_fedavg_is_the_weighted_mean_in_real_units_and_requantizes_exactly(model):
    graph, _, m = model
    g = m.extract(graph)
    a = [np.clip(x.astype(np.int64) + 4, -127, 127).astype(x.dtype) for x in g]
    b = [np.clip(x.astype(np.int64) - 2, -127, 127).astype(x.dtype) for x in g]
    real, mom = aggregate_real(AggregateConfig("fedavg"), [m.to_real(a), m.to_real(b)], [1, 2], m.to_real(g), None)
    assert mom is None
    q = requantize(m, real, "nearest", 0, 1)
    for x, y, z in zip(q, a, b, strict=True):
        want = np.floor((y.astype(np.float64) + 2 * z.astype(np.float64)) / 3 + 0.5)
        np.testing.assert_array_equal(x, np.clip(want, -127, 127) if x.dtype == np.int8 else want)
    same = requantize(m, m.to_real(a), "stochastic", 7, 3)  # integers stay integers under either rounding
    assert all(np.array_equal(x, y) for x, y in zip(same, a, strict=True))


def test_stochastic_requantization_keeps_small_moves_on_average(model):
    graph, _, m = model
    g = [x[:1] for x in m.extract(graph)][:1]
    sub = Manifest(m.slices[:1], m.scales[:1])
    units = [np.full(sub.slices[0].shape, 0.3)]
    real = [u * sc.reshape((-1,) + (1,) * (u.ndim - 1)) for u, sc in zip(units, sub.scales, strict=True)]
    up = np.mean([np.mean(requantize(sub, real, "stochastic", 1, r)[0]) for r in range(1, 41)])
    assert 0.2 < up < 0.4, up  # nearest would give exactly 0
    assert np.all(requantize(sub, real, "nearest", 1, 1)[0] == 0)
    assert g


def test_median_and_trimmed_mean_ignore_one_outlier(model):
    graph, _, m = model
    g = m.to_real(m.extract(graph))
    honest = [[x + 0.01 * i for x in g] for i in range(4)]
    evil = [[x + 1e3 for x in g]]
    for rule in ("fedmedian", "trimmed-mean"):
        cfg = AggregateConfig(rule, trim=0.2)
        out, _ = aggregate_real(cfg, honest + evil, [1] * 5, g, None)
        assert all(np.all(np.abs(o - x) < 0.05) for o, x in zip(out, g, strict=True)), rule
    out, _ = aggregate_real(AggregateConfig("fedavg"), honest + evil, [1] * 5, g, None)
    assert all(np.all(o - x > 100) for o, x in zip(out, g, strict=True))
    with pytest.raises(ValueError, match="unknown aggregation"):
        AggregateConfig("krum")


def test_fedavgm_applies_server_momentum_to_the_pseudo_gradient(model):
    graph, _, m = model
    g = m.to_real(m.extract(graph))
    u = [x - 1.0 for x in g]  # every device moved each value by -1 (real units)
    cfg = AggregateConfig("fedavgm", server_lr=1.0, server_momentum=0.5)
    x1, m1 = aggregate_real(cfg, [u], [3], g, None)
    assert all(np.allclose(a, b - 1.0) for a, b in zip(x1, g, strict=True))
    x2, m2 = aggregate_real(cfg, [[x - 1.0 for x in x1]], [3], x1, m1)
    assert all(np.allclose(a, b - 1.5) for a, b in zip(x2, x1, strict=True))  # d = 1, m = 0.5 * 1 + 1
    assert all(np.allclose(mm, 1.5) for mm in m2)


# --- the checkpoint -------------------------------------------------------------------------------
def test_checkpoint_round_trip_and_refusals(model, tmp_path):
    graph, _, m = model
    arrays = m.extract(graph)
    sig = {"seed": 1, "rule": "fedavgm"}
    state = ServerState(3, arrays, [a.astype(np.float64) * 0.5 for a in arrays], [{"round": 3, "accuracy": 0.5}])
    save_state(tmp_path, state, sig)
    assert not (tmp_path / (STATE_FILE + ".tmp")).exists()
    back = load_state(tmp_path, sig, m)
    assert back.round == 3 and back.history == state.history
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(back.arrays, arrays, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(back.momentum, state.momentum, strict=True))
    (tmp_path / (STATE_FILE + ".tmp")).write_bytes(b"torn")  # a write cut short never replaces the checkpoint
    assert load_state(tmp_path, sig, m).round == 3
    with pytest.raises(CheckpointError, match="another fleet run"):
        load_state(tmp_path, {"seed": 2}, m)
    (tmp_path / STATE_FILE).write_bytes(b"not an npz")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_state(tmp_path, sig, m)
    assert load_state(tmp_path / "empty", sig, m) is None


# --- the shared prefix cache ------------------------------------------------------------------------
def test_prefix_cache_holds_exactly_the_computed_codes(model, tmp_path):
    from microtrain.fleet.device import SimDevice
    from microtrain.fleet.prefix import prefix_codes, prefix_key

    graph, scheme, _ = model
    sim = SimDevice(graph, scheme, "nearest")
    shape = graph.tensors[graph.inputs[0]].shape
    images = np.random.default_rng(2).integers(0, 256, (25, shape[1], shape[2], shape[3])).astype(np.uint8)
    direct = prefix_codes(graph, scheme, images, {"data": "x"}, None, sim.prefix, chunk=10)
    stored = prefix_codes(graph, scheme, images, {"data": "x"}, tmp_path, sim.prefix, chunk=10)
    again = prefix_codes(graph, scheme, images, {"data": "x"}, tmp_path, lambda x: 1 / 0, chunk=10)  # from disk
    assert set(direct) == set(stored) == set(again) and len(list(tmp_path.iterdir())) == 1
    for k in direct:
        assert direct[k].dtype == np.int8 and len(direct[k]) == 25
        np.testing.assert_array_equal(direct[k], stored[k])
        np.testing.assert_array_equal(direct[k], again[k])
    names = [n.name for n in graph.weighted_nodes()]
    other = make_scheme(graph, names[-2:], {"classifier": 1.0})  # another cut: another key
    assert prefix_key(graph, other, {"data": "x"}) != prefix_key(graph, scheme, {"data": "x"})
    assert prefix_key(graph, scheme, {"data": "y"}) != prefix_key(graph, scheme, {"data": "x"})


@pytest.mark.parametrize("failure", [RuntimeError("Failed to start GCS"),
                                     FileNotFoundError("/tmp/ray/session_x/logs/gcs_server.err"),
                                     Exception("The current node timed out during startup.")])
def test_start_ray_tries_again_when_ray_does_not_come_up(monkeypatch, failure):
    """Ray on a busy machine can give up on its GCS server or its raylet with any of these errors
    (a bare Exception for the raylet); all are retried."""
    import ray

    from microtrain.fleet import run

    calls: list[dict] = []

    def init(**kw):
        calls.append(kw)
        if len(calls) == 1:
            raise failure

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(run.time, "sleep", lambda s: None)
    run.start_ray(2)
    assert len(calls) == 2 and calls[1]["num_cpus"] == 2
    calls.clear()
    monkeypatch.setattr(ray, "init", lambda **kw: (_ for _ in ()).throw(failure))
    with pytest.raises(RuntimeError, match="did not start in 3 attempts"):
        run.start_ray(2)
