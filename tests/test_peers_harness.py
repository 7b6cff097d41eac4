"""benchmarks/peers.py harness logic: memory parsing, architecture/scheme reading, ratios, tables.

No framework is run here (the benchmark does that); the C driver is compiled against a fake
generated project to pin it to the compiler contract (mt_model.h API).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool, zoo_path_or_skip

ROOT = Path(__file__).resolve().parent.parent
RUNNERS = ROOT / "benchmarks" / "peers"
sys.path.insert(0, str(RUNNERS))
sys.path.insert(0, str(ROOT / "benchmarks"))  # peers.py imports results_md, as when run as a script
import peer_common as pc  # noqa: E402
import run_microtrain  # noqa: E402


def _load_orchestrator():
    spec = importlib.util.spec_from_file_location("peers_bench", ROOT / "benchmarks" / "peers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


peers = _load_orchestrator()

STATUS = """Name:\tpython
VmPeak:\t  912340 kB
VmHWM:\t  367100 kB
VmRSS:\t  336876 kB
RssAnon:\t  120000 kB
"""


def test_parse_status_reads_the_named_field_in_kib():
    assert pc.parse_status_kb(STATUS, "VmHWM") == 367100
    assert pc.parse_status_kb(STATUS, "VmRSS") == 336876
    with pytest.raises(ValueError, match="VmSwap"):
        pc.parse_status_kb(STATUS, "VmSwap")
    # "VmRSS" must not match "RssAnon" or a prefix of another key
    assert pc.parse_status_kb("RssAnonVmRSS:  1 kB\nVmRSS:   7 kB\n", "VmRSS") == 7


def test_status_kb_of_this_process_is_plausible():
    rss, hwm = pc.status_kb("VmRSS"), pc.status_kb("VmHWM")
    assert 1000 < rss <= hwm


_MEASURE_TWO_STEPS = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import peer_common as pc
held = []
def step():  # each measured step touches 40 MB more than the build did
    held.append(np.ones(10 * 1024 * 1024, np.float32))
    return float(len(held))
print(json.dumps(pc.measure_steps(step, warmup=0, steps=2)))
"""


def test_measure_steps_counts_memory_the_steps_allocate():
    # in a process of its own, as the benchmark runs each framework: in a pytest worker, memory other
    # tests' threads give back during the steps lowers the process's peak (seen once: 40 of 80 MB)
    import subprocess

    out = subprocess.run([sys.executable, "-c", _MEASURE_TWO_STEPS, str(RUNNERS)], capture_output=True, text=True,
                         check=True).stdout
    res = json.loads(out)
    assert res["delta_kb"] >= 2 * 40 * 1024 * 0.95
    assert len(res["times_ms"]) == 2 and res["median_ms"] > 0
    assert res["first_loss"] == 1.0 and res["last_loss"] == 2.0


def _conv(cin, cout, k, stride, groups, y_zero, with_bias=True):
    params = {"weight": np.ones((cout, cin // groups, k, k), np.int8) * 2, "bias": np.arange(cout, dtype=np.int32),
              "w_scales": np.full(cout, 0.5, np.float32), "x_scale": 0.25, "x_zero": 0, "y_scale": 0.1,
              "y_zero": y_zero}
    return {"in_channel": cin, "out_channel": cout, "kernel_size": (k, k), "stride": stride, "groups": groups,
            "params": params}


TINY_ZOO = {
    "first_conv": _conv(3, 8, 3, 2, 1, -128),
    "blocks": [
        {"pointwise1": None, "depthwise": _conv(8, 8, 3, 1, 8, -128), "pointwise2": _conv(8, 8, 1, 1, 1, 5),
         "residual": {"in_channel": 8}, "se": None},
        {"pointwise1": _conv(8, 16, 1, 1, 1, -128), "depthwise": _conv(16, 16, 5, 2, 16, -128),
         "pointwise2": _conv(16, 12, 1, 1, 1, -3), "residual": None, "se": None},
    ],
    "classifier": {"in_channel": 12, "out_channel": 1000},
}


def test_arch_from_zoo_indexes_convs_and_reads_folded_relu6():
    arch = pc.arch_from_zoo(TINY_ZOO, "tiny", num_classes=10)
    convs = pc.all_convs(arch)
    assert [c["index"] for c in convs] == [0, 1, 2, 3, 4, 5]
    assert [c["name"] for c in convs] == ["first_conv", "blocks.0.depthwise", "blocks.0.pointwise2",
                                          "blocks.1.pointwise1", "blocks.1.depthwise", "blocks.1.pointwise2"]
    assert [c["relu6"] for c in convs] == [True, True, False, True, True, False]
    assert [b["residual"] for b in arch["blocks"]] == [False, True, False]
    assert convs[4]["k"] == 5 and convs[4]["stride"] == 2 and convs[4]["groups"] == 16
    assert arch["head_in"] == 12 and arch["num_classes"] == 10 and arch["input_hw"] == [128, 128]
    json.dumps(arch)  # the runners receive it as JSON


def test_zoo_float_weights_dequantize_per_channel():
    w = pc.zoo_float_weights(TINY_ZOO)
    assert sorted(w) == sorted([f"w{i}" for i in range(6)] + [f"b{i}" for i in range(6)])
    assert w["w0"].shape == (8, 3, 3, 3) and np.all(w["w0"] == 1.0)  # 2 * 0.5
    np.testing.assert_allclose(w["b3"], np.arange(16) * 0.5 * 0.25)  # bias * s_w * s_x


def test_scheme_plan_on_the_published_mbv2_scheme():
    from microtrain.frontend.safe_pickle import load_torch_zip

    arch = pc.arch_from_zoo(load_torch_zip(zoo_path_or_skip("mbv2-w0.35")), "mbv2-w0.35")
    plan = pc.scheme_plan(arch, "mbv2-w0.35/99kb")
    convs = pc.all_convs(arch)
    assert len(convs) == 51
    assert [i for i, p in plan.items() if p["bias"]] == list(range(26, 51))  # the last 25 convs
    weighted = {i: p["weight_channels"] for i, p in plan.items() if p["weight_ratio"] > 0}
    assert sorted(weighted) == [27, 30, 33, 36, 39, 42, 45, 48]
    assert weighted[42] == -(-convs[42]["cout"] // 8)  # ratio 1/8, rounded up
    assert weighted[27] == convs[27]["cout"]
    with pytest.raises(KeyError, match="unknown scheme"):
        pc.scheme_plan(arch, "mbv2-w0.35/1kb")


def test_select_rows_by_prefix_and_id():
    assert peers.select_rows("pytorch") == ["pytorch-full", "pytorch-full-bn", "pytorch-sparse"]
    assert peers.select_rows("mnn-full,microtrain-host") == ["mnn-full", "microtrain-host"]
    assert peers.select_rows("all") == list(peers.ROWS)
    with pytest.raises(SystemExit, match="unknown framework"):
        peers.select_rows("jax")


def _result(row, model="mbv2-w0.35", **kw):
    return {"row": row, "label": peers.ROWS[row][2], "model": model, "status": "ok", **kw}


def test_ratios_and_tables():
    results = [
        _result("pytorch-full", delta_kb=30 * 1024, peak_rss_kb=360 * 1024, median_ms=60.0,
                trained_tensors_changed="104/104"),
        _result("microtrain-host", delta_kb=200, peak_rss_kb=1500, median_ms=20.0, arena_bytes=100 * 1024),
        _result("microtrain-qemu", sram_bytes=150 * 1024, sram_breakdown={"arena": 100 * 1024, "stack": 1024},
                train_step_instructions=294e6, fit_note="does not fit 256 KB SRAM"),
        {"row": "mnn-full", "label": "MNN full update", "model": "mbv2-w0.35", "status": "error",
         "reason": "No module named 'MNN'"},
        _result("pytorch-full", model="mcunet-5fps", delta_kb=10, peak_rss_kb=20, median_ms=5.0,
                trained_tensors_changed="84/84"),
    ]
    peers.add_ratios(results)
    assert results[0]["time_vs_microtrain_host"] == pytest.approx(3.0)
    assert results[0]["mem_vs_microtrain_sram"] == pytest.approx(30 * 1024 / 150)
    assert "time_vs_microtrain_host" not in results[4]  # no microtrain row for that model
    text = peers.format_table(results)
    assert "30.0 MB" in text and "360.0 MB" in text and "3.00x" in text
    assert "205x (delta) / 2458x (process peak) the Cortex-M SRAM" in text
    assert "150 KB" in text and "arena 100.0 KB" in text and "stack 1.0 KB" in text
    assert "294 M instructions/step" in text and "does not fit 256 KB SRAM" in text
    assert "error: No module named 'MNN'" in text
    md = peers.format_markdown(results)
    lines = md.splitlines()
    assert len(lines) == 2 + len(results)
    assert all(line.count("|") == len(peers.HEADER) + 1 for line in lines)


def test_results_section_names_command_definition_and_paper(tmp_path):
    args = type("A", (), {"warmup": 3, "steps": 20, "threads": 1})()
    results = [_result("microtrain-qemu", status="not available yet", reason="`microtrain compile` missing")]
    text = peers.results_section(results, "cmd --x", args, tmp_path / "img" / "peers.png")
    assert "`cmd --x`" in text and "VmHWM" in text and "652 MB" in text and "141 KB" in text
    assert "not available yet: `microtrain compile` missing" in text


def test_error_text_keeps_the_error_and_its_detail():
    err = ("  plan_memory: arena 1240.5 KB -> 120.6 KB\nbuilding for cortex-m7\n"
           "microtrain compile: error: the program does not fit: SRAM overflowed by 19200 bytes\n"
           "  SRAM also keeps 4096 bytes of heap\n  largest SRAM symbols in the way:\n")
    text = run_microtrain.error_text(err)
    assert text.startswith("microtrain compile: error: the program does not fit") and "4096 bytes of heap" in text
    assert "largest" not in text
    assert run_microtrain.error_text("just one line\n") == "just one line"
    assert run_microtrain.report_bytes({"peak_bytes": 5, "peak_step": 171, "arena_bytes": 3, "x_bytes": "7"}) == {
        "peak_bytes": 5, "arena_bytes": 3}


FAKE_HEADER = """#ifndef MT_MODEL_H
#define MT_MODEL_H
#include <stdint.h>
#define MT_INPUT_BYTES 64
#define MT_NUM_CLASSES 10
#define MT_ARENA_BYTES 4096u
void mt_init(void);
void mt_set_schedule(int32_t kind, float base_lr, uint32_t warmup, uint32_t total);
float mt_train_step(const int8_t *input, int32_t label);
#endif
"""
FAKE_MODEL = """#include "mt_model.h"
static float arena[MT_ARENA_BYTES / 4];
static float w = 1.0f, lr = 0.0f;
void mt_init(void) { w = 1.0f; }
void mt_set_schedule(int32_t kind, float base_lr, uint32_t warmup, uint32_t total) {
    (void)kind; (void)warmup; (void)total; lr = base_lr; }
float mt_train_step(const int8_t *input, int32_t label) {
    unsigned i; float s = 0.0f;
    for (i = 0; i < MT_ARENA_BYTES / 4; i++) arena[i] = (float)input[i % MT_INPUT_BYTES] * w;
    for (i = 0; i < MT_ARENA_BYTES / 4; i++) s += arena[i];
    w -= lr * (float)label;
    return s * 0.0f + w;
}
"""


@pytest.mark.host_c
def test_host_driver_builds_against_the_generated_project_contract(tmp_path):
    require_tool("gcc", "gcc")
    (tmp_path / "include").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "runtime").mkdir()
    (tmp_path / "include" / "mt_model.h").write_text(FAKE_HEADER)
    (tmp_path / "src" / "model.c").write_text(FAKE_MODEL)
    res = run_microtrain.run_host(tmp_path, warmup=2, steps=5, lr=0.5, work=tmp_path)
    assert res["arena_bytes"] == 4096
    assert len(res["times_ms"]) == 5 and res["median_ms"] >= 0
    assert res["delta_kb"] == res["peak_rss_kb"] - res["rss_build_kb"] and res["delta_kb"] >= 0
    assert res["first_loss"] == pytest.approx(1.0 - 0.5 * 3)  # the first warm-up step's return value
    assert res["last_loss"] == pytest.approx(1.0 - 7 * 0.5 * 3)


def test_published_schemes_match_microtrain_presets():
    # The runners import no microtrain, so they keep their own copy of the README table.
    from microtrain.sparse.presets import PUBLISHED

    ours = {name: (n, tuple(i), tuple(float(r) for r in rs)) for name, (n, i, rs) in pc.PUBLISHED_SCHEMES.items()}
    theirs = {f"{m}/{b}": (n, tuple(i), tuple(float(r) for r in rs))
              for m, budgets in PUBLISHED.items() for b, (n, i, rs) in budgets.items()}
    assert ours == theirs


@pytest.mark.zoo
@pytest.mark.parametrize("name", ["mbv2-w0.35", "proxyless-w0.3", "mcunet-5fps"])
def test_arch_spec_matches_the_zoo_pytorch_definition(name):
    # microtrain.zoo.mcu_nets builds conv(no bias) + BN per conv; the peers' folded graph has conv + bias:
    # same weights, so the counts differ by exactly one value per output channel.
    from microtrain.frontend.safe_pickle import load_torch_zip
    from microtrain.zoo.mcu_nets import build_mcu_net

    arch = pc.arch_from_zoo(load_torch_zip(zoo_path_or_skip(name)), name)
    convs = pc.all_convs(arch)
    ours = sum(c["cout"] * c["cin"] // c["groups"] * c["k"] ** 2 + c["cout"] for c in convs)
    ours += arch["head_in"] * 10 + 10
    theirs = sum(p.numel() for p in build_mcu_net(name, 10).parameters())
    assert theirs == ours + sum(c["cout"] for c in convs)


def test_chart_bars_pair_delta_with_process_peak_and_add_the_paper():
    results = [_result("pytorch-full", delta_kb=30.0, peak_rss_kb=300.0, median_ms=1.0),
               _result("microtrain-qemu", sram_bytes=2048),
               {"row": "mnn-full", "label": "MNN full update", "model": "mbv2-w0.35", "status": "error"}]
    bars = peers.chart_bars(results, "mbv2-w0.35")
    assert bars[0] == ("PyTorch full update", 30.0, 300.0, "tab:blue")
    assert bars[1] == ("microtrain compiled (Cortex-M7 SRAM)", None, 2.0, "tab:green")
    assert [b[0] for b in bars[2:]] == [f"paper: {n}" for n in peers.PAPER_MBV2_KB]
    assert peers.chart_bars(results, "mcunet-5fps") == []


def test_summary_answers_the_ratio_and_speed_questions():
    results = [_result("pytorch-full", delta_kb=28 * 1024.0, peak_rss_kb=350 * 1024.0, median_ms=100.0),
               _result("pytorch-sparse", delta_kb=20 * 1024.0, peak_rss_kb=340 * 1024.0, median_ms=50.0),
               _result("microtrain-host", delta_kb=500.0, peak_rss_kb=2500.0, median_ms=200.0),
               _result("microtrain-qemu", sram_bytes=175 * 1024)]
    lines = peers.summary_lines(results)
    assert lines[0].startswith("- mbv2-w0.35: PyTorch full update peak / microtrain Cortex-M7 SRAM (175 KB) = 2048x")
    assert "164x by the step's own delta" in lines[0]
    assert lines[1].endswith("microtrain is 4.0x slower.")
    assert peers.summary_lines(results[:1]) == []


def test_peers_extra_is_pinned_and_not_a_main_dependency():
    import tomllib

    extra = peers.peers_extra()
    assert sorted(r.split("==")[0] for r in extra) == ["mnn", "tensorflow-cpu"]
    assert all("==" in r for r in extra)
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(d.startswith(("tensorflow", "mnn")) for d in main)
