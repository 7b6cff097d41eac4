"""The example of docs/api.md runs as written: load a zoo model, new 10-class head, plan for a
budget, compile for the Cortex-M7, a few steps on QEMU, the memory report. The test executes the
documentation's own code block, so the documented example cannot drift from the API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import require_tool, zoo_path_or_skip

API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"

pytestmark = [pytest.mark.zoo, pytest.mark.target, pytest.mark.slow]


def example_code() -> str:
    text = API_MD.read_text()
    section = text[text.index("## Example"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_api_example_runs(tmp_path, monkeypatch, capsys):
    zoo_path_or_skip("mbv2-w0.35")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    monkeypatch.chdir(tmp_path)
    env: dict = {}
    exec(compile(example_code(), str(API_MD), "exec"), env)  # noqa: S102 - our own documentation
    run, memory, plan = env["run"], env["memory"], env["plan"]
    assert len(run.losses) == 2 and all(loss > 0 for loss in run.losses)
    assert 0 < memory["sram_bytes"] <= 256 * 1024 and memory["flash_bytes"] > 0
    assert plan.peak_bytes <= 128 * 1024
    assert run.cost["train_step_instructions_median"] > 0
    out = capsys.readouterr().out
    assert "planned peak" in out and "instructions per training step" in out
