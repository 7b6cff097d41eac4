"""Steps 6-10 of `make demo` (plan -> compile for Cortex-M7 -> train on QEMU -> cloud baseline), on tiny settings.

`make demo` itself runs them at full size; this keeps the path tested in `make test`.
"""

from __future__ import annotations

import pytest
from conftest import require_tool

pytestmark = [pytest.mark.target, pytest.mark.slow]


def test_demo_device_stage_trains_on_the_emulated_cortex_m7(tmp_path, capsys):
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    from microtrain import demo_ondevice

    tiny_plan = ["--limit", "60", "--test-limit", "40", "--epochs", "1", "--candidates", "2", "--evaluations", "8"]
    result = demo_ondevice.main(tmp_path, budget="48KB", steps=300, lr=0.02, eval_count=120, plan_args=tiny_plan)
    out = capsys.readouterr().out
    assert "$ microtrain plan default --data digits" in out and "$ microtrain run" in out
    assert result["eval_samples"] == 120
    # The new head starts near chance; 300 steps at batch 1 on the device must clearly beat it.
    assert result["accuracy_before"] < 0.35
    assert result["accuracy_after"] > result["accuracy_before"] + 0.15
    # The scheme search respected the budget, and the firmware fits the board it was linked for.
    assert result["planned_peak_bytes"] <= 48 * 1024
    assert 0 < result["sram_bytes"] <= 256 * 1024 and 0 < result["flash_bytes"] <= 1024 * 1024
    assert result["instructions_per_step"] > 0
    # The paper's baseline on the same 300 samples: fp32 whole-model fine-tuning, deployed as int8,
    # also learns; the plot of both runs exists, and the prequential accuracy is the device's own.
    assert result["cloud_accuracy"] > result["accuracy_before"] + 0.15
    assert (tmp_path / "training.png").stat().st_size > 10_000 and result["plot"] == str(tmp_path / "training.png")
    assert 0.0 < result["prequential_accuracy"] < 1.0 and "prequential accuracy" in out
