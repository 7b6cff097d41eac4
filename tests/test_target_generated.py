"""The compiler's generated project on the emulated Cortex-M7 equals the host build: loss bits
of every step, logits of every evaluated sample (hence predictions), trained weights byte for
byte. (The host build is itself checked against the reference training evaluation in
test_host_codegen.py, so QEMU == host == reference.) Also: the firmware links at 256 KB /
1 MB and reports its memory and a deterministic instruction count per step."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import default_cnn_with_scheme, require_tool, zoo_path_or_skip

import microtrain.compiler  # noqa: F401
from microtrain.codegen.driver_files import write_driver_files
from microtrain.codegen.generate_project import generate_project
from microtrain.compiler.pipeline import CompileOptions, compile_training
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.scheme import make_scheme
from microtrain.targets import cortex_m7, host

pytestmark = [pytest.mark.target, pytest.mark.host_c]
DEFINES = ("MT_DEBUG_LOGITS",)


@pytest.fixture(autouse=True)
def _tools():
    require_tool("gcc", "gcc")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")


def _data(graph, n, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (n,) + graph.tensors[graph.inputs[0]].shape[1:]).astype(np.int8)
    k = graph.tensors[graph.outputs[0]].shape[1]
    return x, rng.integers(0, k, n).astype(np.int32)


def _logits(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("logits ")]


def _host_vs_qemu(tmp_path, graph, scheme, options=None, steps=12, n=6, lr=0.05, **budgets):
    step = compile_training(graph, scheme, options or CompileOptions())
    out = generate_project(step, graph, tmp_path / "proj")
    x, y = _data(graph, n)
    runs = {}
    for name in ("host", "qemu"):
        work = write_driver_files(tmp_path / name, x, y, steps=steps, lr=lr, x_test=x, y_test=y, eval_count=n)
        if name == "host":
            runs[name] = host.run(out, work, exe=host.build(out, defines=DEFINES))
        else:
            runs[name] = cortex_m7.run(out, work, defines=DEFINES, **budgets)
    h, q = runs["host"], runs["qemu"]
    assert len(q.loss_bits) == steps and q.loss_bits == h.loss_bits, "loss bits differ host vs Cortex-M7"
    assert len(_logits(q.stdout)) == n and _logits(q.stdout) == _logits(h.stdout), "logits differ"
    assert (q.eval_correct, q.eval_total) == (h.eval_correct, h.eval_total)
    assert q.weights_path.read_bytes() == h.weights_path.read_bytes(), "trained weights differ"
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
    again = cortex_m7.run(tmp_path / "proj", tmp_path / "qemu", elf=q.elf)
    assert again.step_instructions == q.step_instructions and min(q.step_instructions) > 1000


def test_toy_full_update_stochastic_qemu_equals_host(tmp_path):
    graph = toy_mbnet(4, size=6, blocks=((2, 8, 2), (2, 8, 1)), classes=3)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names, {n: 1.0 for n in names})
    _host_vs_qemu(tmp_path, graph, scheme, CompileOptions(reorder=False, rounding="stochastic", seed=3))


def test_default_cnn_qemu_equals_host(tmp_path):
    graph, scheme = default_cnn_with_scheme()
    _, q = _host_vs_qemu(tmp_path, graph, scheme, steps=10, n=10)
    assert q.memory["sram_bytes"] <= 256 * 1024


@pytest.mark.zoo
@pytest.mark.slow
@pytest.mark.parametrize("model,scheme", [("mbv2-w0.35", "mbv2-w0.35/99kb"), ("proxyless-w0.3", "proxyless-w0.3/98kb"),
                                          ("mcunet-5fps", "mcunet-5fps/99kb")])
def test_zoo_published_scheme_qemu_equals_host(tmp_path, model, scheme):
    from microtrain.frontend.heads import new_head
    from microtrain.frontend.mcu_zoo import import_zoo_model
    from microtrain.sparse.presets import load_scheme

    graph = new_head(import_zoo_model(zoo_path_or_skip(model)), 10)
    # Links at the paper's budgets (256 KB SRAM, 1 MB flash) and stays within them when run.
    step, q = _host_vs_qemu(tmp_path, graph, load_scheme(scheme, graph), steps=2, n=2, lr=0.01, sram="256KB",
                            flash="1MB")
    assert q.memory["sram_bytes"] <= 256 * 1024 and q.memory["flash_bytes"] <= 1024 * 1024
    # the measured SRAM is the plan (arena + trained tensors in RAM) plus stack, heap and small statics
    assert step.plan.peak_bytes <= q.memory["sram_bytes"] <= step.plan.peak_bytes + 16 * 1024


def test_corrupt_data_file_is_a_clear_error(tmp_path):
    from microtrain.cli.common import UserError

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
