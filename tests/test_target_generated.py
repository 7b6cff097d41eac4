"""The compiler's generated project on every emulated core equals the host build: loss bits of
every step, logits of every evaluated sample (hence predictions), trained weights byte for byte,
with no tolerance. The default CNN trains on every core (Cortex-M3/M4/M7/M33/M55, RV32IMC,
RV32IMAFC) and its trained weights also equal the torch simulator's; a zoo model (the published
~100 KB scheme) trains on one core of each architecture family. (The host build is itself
checked against the reference training evaluation in test_host_codegen.py, so QEMU == host ==
reference == simulator.) Also: the firmware links at 256 KB / 1 MB, has no double-precision
arithmetic on the step's path, and reports its memory and a deterministic instruction count
per step."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import default_cnn_with_scheme, require_tool, zoo_path_or_skip
from test_target_mcu import tools_or_skip

import microtrain.compiler  # noqa: F401
from microtrain.codegen.driver_files import write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.scheme import make_scheme
from microtrain.targets import cortex_m7, host
from microtrain.targets.mcu import CORES, McuTarget
from microtrain.targets.mcu.doubles import double_precision_on_step_path

pytestmark = [pytest.mark.target, pytest.mark.host_c]
DEFINES = ("MT_DEBUG_LOGITS",)


@pytest.fixture(autouse=True)
def _tools():
    require_tool("gcc", "gcc")


def _data(graph, n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
    k = graph.tensors[graph.outputs[0]].shape[1]
    return x, rng.integers(0, k, n).astype(np.int32)


def _logits(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("logits ")]


def _host_vs_qemu(tmp_path, graph, scheme, options=None, steps=12, n=6, lr=0.05, core="cortex-m7", host_run=None,
                  **budgets):
    """Compile, run on the host (or take ``host_run``: (out, result) of the same project) and on
    QEMU's ``core``; assert they agree exactly."""
    tools_or_skip(core)
    step = compile_training(graph, scheme, options or CompileOptions())
    x, y = _data(graph, n)
    if host_run is None:
        out = generate_project(step, graph, tmp_path / "proj")
        work = write_driver_files(tmp_path / "host", x, y, steps=steps, lr=lr, x_test=x, y_test=y, eval_count=n)
        h = host.run(out, work, exe=host.build(out, defines=DEFINES))
    else:
        out, h = host_run
    work = write_driver_files(tmp_path / core, x, y, steps=steps, lr=lr, x_test=x, y_test=y, eval_count=n)
    q = McuTarget(core).run(out, work, defines=DEFINES, **budgets)
    assert len(q.loss_bits) == steps and q.loss_bits == h.loss_bits, f"loss bits differ host vs {core}"
    assert len(_logits(q.stdout)) == n and _logits(q.stdout) == _logits(h.stdout), "logits differ"
    assert (q.eval_correct, q.eval_total) == (h.eval_correct, h.eval_total)
    assert q.weights_path.read_bytes() == h.weights_path.read_bytes(), f"trained weights differ host vs {core}"
    assert len(set(q.loss_bits)) > 1  # the model did change
    return step, q


def test_toy_sparse_scheme_qemu_equals_host(tmp_path):
    graph = toy_mbnet(0, size=8, classes=5)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[3:], {"blocks.1.pointwise1": 0.5, "blocks.1.depthwise": 0.5,
                                            "blocks.1.pointwise2": 1.0, "classifier": 1.0})
    step, q = _host_vs_qemu(tmp_path, graph, scheme)
    mem = q.memory
    assert mem["sram_budget_bytes"] == 256 * 1024 and mem["flash_budget_bytes"] == 1024 * 1024
    assert mem["breakdown"]["arena"] == step.plan.arena_bytes
    # trained tensors in RAM: whole, except blocks.1.pointwise1 (ratio 0.5): only its kept rows
    full = {t["name"]: step.graph.tensors[t["name"]].nbytes for t in step.graph.meta["training"]["trained"]}
    w = step.graph.tensors["blocks.1.pointwise1.weight"]
    kept_bytes = w.nbytes // w.shape[0] * (w.shape[0] // 2)
    assert step.plan.trainable["blocks.1.pointwise1.weight"] == kept_bytes < w.nbytes
    assert mem["breakdown"]["trainable_weights"] == step.plan.trainable_bytes == \
        sum(full.values()) - w.nbytes + kept_bytes
    assert mem["sram_bytes"] <= 256 * 1024 and mem["stack_high_water_bytes"] > 0
    # Same work per step (the data-dependent parts are value-, not control-dependent): a
    # deterministic count, identical on a second run of the same firmware.
    again = cortex_m7.run(tmp_path / "proj", tmp_path / "cortex-m7", elf=q.elf)
    assert again.step_instructions == q.step_instructions and min(q.step_instructions) > 1000


def test_toy_full_update_stochastic_qemu_equals_host(tmp_path):
    graph = toy_mbnet(4, size=6, blocks=((2, 8, 2), (2, 8, 1)), classes=3)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names, {n: 1.0 for n in names})
    _host_vs_qemu(tmp_path, graph, scheme, CompileOptions(reorder=False, rounding="stochastic", seed=3))


DEFAULT_STEPS, DEFAULT_N, DEFAULT_LR = 10, 10, 0.05


@pytest.fixture(scope="module")
def default_cnn_host(tmp_path_factory):
    """The default CNN project, its host run and the simulator's trained tensors (once per module).
    The recipe: SGD + QAS at a constant learning rate, stochastic rounding (the default), seed 0."""
    require_tool("gcc", "gcc")
    from microtrain.codegen.driver_files import read_weights

    graph, scheme = default_cnn_with_scheme()
    root = tmp_path_factory.mktemp("default_cnn")
    step = compile_training(graph, scheme, CompileOptions(rounding="stochastic", seed=0))
    out = generate_project(step, graph, root / "proj")
    x, y = _data(graph, DEFAULT_N)
    work = write_driver_files(root / "host", x, y, steps=DEFAULT_STEPS, lr=DEFAULT_LR, x_test=x, y_test=y,
                              eval_count=DEFAULT_N)
    h = host.run(out, work, exe=host.build(out, defines=DEFINES))
    sim_bits, sim = _simulate(graph, scheme, x, y, DEFAULT_STEPS, DEFAULT_LR)
    assert sim_bits == h.loss_bits, "the simulator's loss bits differ from the host build's"
    return graph, scheme, out, h, {name: sim.tensors[name].data for name in read_weights(out, h.weights_path)}


def _simulate(graph, scheme, x, y, steps, lr):
    """The torch simulator's run of the driver's recipe (SGD + QAS, constant lr, stochastic rounding,
    seed 0, sample i % n at step i): (loss bits per step, the trained graph)."""
    from microtrain.train.loop import TrainConfig, Trainer

    trainer = Trainer(graph, scheme, TrainConfig(optimizer="sgd-qas", lr=lr, batch_size=1,
                                                 rounding="stochastic", seed=0))
    cache = trainer.cache(x)
    losses = []
    for i in range(steps):
        trainer._step(cache, y.astype(np.int64), [np.array([i % len(y)])], lr)
        losses += trainer.sample_losses
    return [int(b) for b in np.array(losses, np.float32).view(np.uint32)], trainer.final_graph()


@pytest.mark.parametrize("core", list(CORES))
def test_default_cnn_trains_on_every_core_equal_to_host_and_simulator(tmp_path, default_cnn_host, core):
    """The default CNN, 10 steps at batch 1 on each core: loss bits, logits and trained weights equal
    to the host build's, the trained weights equal to the torch simulator's; no double-precision
    arithmetic on the step's path; it fits 256 KB."""
    from microtrain.codegen.driver_files import read_weights

    tools_or_skip(core)
    graph, scheme, out, h, sim = default_cnn_host
    _, q = _host_vs_qemu(tmp_path, graph, scheme, steps=DEFAULT_STEPS, n=DEFAULT_N, lr=DEFAULT_LR, core=core,
                         host_run=(out, h))
    got = read_weights(out, q.weights_path)
    assert set(got) == set(sim)
    for name, arr in got.items():
        diff = np.flatnonzero(arr.reshape(-1) != sim[name].reshape(-1))
        assert diff.size == 0, f"{core}: {name} differs from the simulator at {diff.size} elements"
    assert any(np.any(arr != graph.tensors[name].data) for name, arr in got.items())
    assert q.memory["sram_bytes"] <= 256 * 1024 and q.memory["core"] == core
    assert double_precision_on_step_path(CORES[core], q.elf) == []
    assert min(q.step_instructions) > 10000


@pytest.mark.zoo
@pytest.mark.slow
@pytest.mark.parametrize("model,scheme,core", [("mbv2-w0.35", "mbv2-w0.35/99kb", "cortex-m7"),
                                               ("proxyless-w0.3", "proxyless-w0.3/98kb", "cortex-m7"),
                                               ("proxyless-w0.3", "proxyless-w0.3/98kb", "cortex-m55"),
                                               ("mcunet-5fps", "mcunet-5fps/99kb", "cortex-m7"),
                                               ("mbv2-w0.35", "mbv2-w0.35/99kb", "riscv32")])
def test_zoo_published_scheme_qemu_equals_host(tmp_path, model, scheme, core):
    """The zoo models at the paper's budgets: all three on the Cortex-M7 (DSP kernels, the target of the
    speed work), Proxyless on the Cortex-M55 (Helium kernels), MbV2 on RV32IMC (portable C)."""
    from microtrain.frontend.heads import new_head
    from microtrain.frontend.mcu_zoo import import_zoo_model
    from microtrain.sparse.presets import load_scheme

    tools_or_skip(core)
    from microtrain.codegen.driver_files import read_weights

    graph = new_head(import_zoo_model(zoo_path_or_skip(model)), 10)
    scheme = load_scheme(scheme, graph)
    # Links at the paper's budgets (256 KB SRAM, 1 MB flash) and stays within them when run.
    step, q = _host_vs_qemu(tmp_path, graph, scheme, steps=2, n=2, lr=0.01, core=core, sram="256KB", flash="1MB")
    # ... and trains as the torch simulator does: the same loss bits and trained tensors
    x, y = _data(graph, 2)
    sim_bits, sim = _simulate(graph, scheme, x, y, 2, 0.01)
    assert sim_bits == q.loss_bits, f"{core}: loss bits differ from the simulator's"
    got = read_weights(tmp_path / "proj", q.weights_path)
    assert got
    for name, arr in got.items():
        diff = np.flatnonzero(arr.reshape(-1) != sim.tensors[name].data.reshape(-1))
        assert diff.size == 0, f"{core}: {name} differs from the simulator at {diff.size} elements"
    assert q.memory["sram_bytes"] <= 256 * 1024 and q.memory["flash_bytes"] <= 1024 * 1024
    # the measured SRAM is the plan (arena + trained tensors in RAM) plus stack, heap and small statics
    assert step.plan.peak_bytes <= q.memory["sram_bytes"] <= step.plan.peak_bytes + 16 * 1024


def test_corrupt_data_file_is_a_clear_error(tmp_path):
    from microtrain.cli.common import UserError

    tools_or_skip("cortex-m7")
    graph = toy_mbnet(0, size=8, classes=5)
    names = [n.name for n in graph.weighted_nodes()]
    step = compile_training(graph, make_scheme(graph, names[-2:], {}), CompileOptions())
    out = generate_project(step, graph, tmp_path / "proj")
    x, y = _data(graph, 4)
    work = write_driver_files(tmp_path / "work", x, y, steps=4, lr=0.05)
    data = (work / "mt_train_x.bin").read_bytes()
    (work / "mt_train_x.bin").write_bytes(data[: len(data) // 2])  # truncated: samples 2, 3 missing
    with pytest.raises(UserError, match=r"exited with code 1(.|\n)*cannot read training sample 2"):
        cortex_m7.run(out, work)
