"""`microtrain compile --target cortex-m7` and `microtrain run --target qemu --json` end to end on
a small model (8x8 gray input, digits): memory from the linked ELF and the run, instructions per
step, the same losses as `--target host`; the same through `--target qemu --core riscv32f` and
`--target cortex-m55`; and the clear errors at the CLI: over budget, an unknown core or target,
a budget the core's board cannot map, a missing toolchain."""

from __future__ import annotations

import json

import pytest
from conftest import require_tool

from microtrain.cli import main
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.ir import save_graph

pytestmark = [pytest.mark.target, pytest.mark.host_c]


@pytest.fixture
def model_path(tmp_path):
    require_tool("gcc", "gcc")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    require_tool("qemu-system-arm", "qemu-system-arm")
    path = tmp_path / "toy"
    save_graph(toy_mbnet(2, size=8, in_channels=1, classes=10), path)
    return path.with_suffix(".json")


def _json(capsys, argv) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_compile_and_run_on_qemu_json(tmp_path, capsys, model_path):
    proj = tmp_path / "proj"
    doc = _json(capsys, ["compile", str(model_path), "--scheme", "last-k:3", "--out", str(proj),
                         "--target", "cortex-m7", "--json"])
    mem = doc["target"]["memory"]
    assert mem["sram_budget_bytes"] == 256 * 1024 and mem["flash_budget_bytes"] == 1024 * 1024
    assert mem["sram_bytes"] is None and 0 < mem["sram_static_bytes"] < 64 * 1024  # not run yet
    assert mem["breakdown"]["arena"] == doc["arena_bytes"]

    args = ["--data", "digits", "--steps", "8", "--eval", "20", "--lr", "0.05"]
    q = _json(capsys, ["run", str(proj), "--target", "qemu", *args, "--workdir", str(tmp_path / "q"), "--json"])
    h = _json(capsys, ["run", str(proj), "--target", "host", *args, "--workdir", str(tmp_path / "h"), "--json"])
    assert q["loss_bits"] == h["loss_bits"] and len(q["loss_bits"]) == 8
    assert (q["eval_correct"], q["eval_total"]) == (h["eval_correct"], 20)
    m = q["memory"]
    assert m["sram_bytes"] == m["sram_static_bytes"] + m["heap_used_bytes"] + m["stack_high_water_bytes"]
    assert m["sram_bytes"] <= 256 * 1024 and set(m["breakdown"]) >= {"arena", "trainable_weights", "stack", "code"}
    assert q["cost"]["train_step_instructions_median"] > 10_000
    assert (tmp_path / "q" / "mt_weights.bin").read_bytes() == (tmp_path / "h" / "mt_weights.bin").read_bytes()


def test_compile_over_budget_is_a_clear_cli_error(tmp_path, capsys, model_path):
    code = main(["compile", str(model_path), "--scheme", "last-k:3", "--out", str(tmp_path / "p"),
                 "--target", "cortex-m7", "--sram", "16KB"])
    err = capsys.readouterr().err
    assert code == 2
    assert "does not fit cortex-m7: SRAM overflowed by" in err and "--sram" in err and "mt_arena" in err


def test_run_on_other_cores_by_core_and_by_target_name(tmp_path, capsys, model_path):
    from test_target_mcu import tools_or_skip

    tools_or_skip("riscv32f")
    tools_or_skip("cortex-m55")
    proj = tmp_path / "proj"
    doc = _json(capsys, ["compile", str(model_path), "--scheme", "last-k:3", "--out", str(proj),
                         "--target", "riscv32f", "--json"])
    assert doc["target"]["name"] == "riscv32f" and doc["target"]["board"] == "virt"
    args = ["--data", "digits", "--steps", "4", "--lr", "0.05"]
    h = _json(capsys, ["run", str(proj), "--target", "host", *args, "--workdir", str(tmp_path / "h"), "--json"])
    r = _json(capsys, ["run", str(proj), "--target", "qemu", "--core", "riscv32f", *args, "--workdir",
                       str(tmp_path / "r"), "--json"])
    m = _json(capsys, ["run", str(proj), "--target", "cortex-m55", *args, "--workdir", str(tmp_path / "m"), "--json"])
    assert r["core"] == "riscv32f" and m["core"] == "cortex-m55"
    assert r["loss_bits"] == h["loss_bits"] == m["loss_bits"] and len(h["loss_bits"]) == 4
    assert "mps3-an547" in m["cost"]["measure"] and r["memory"]["sram_bytes"] <= 256 * 1024


@pytest.mark.parametrize("argv,message", [
    (["--target", "qemu", "--core", "cortex-m99"], "unknown core 'cortex-m99': choose one of cortex-m3"),
    (["--target", "esp32"], "unknown target 'esp32': choose one of host, qemu, cortex-m3"),
    (["--target", "cortex-m4", "--core", "riscv32"], "--target cortex-m4 and --core riscv32 disagree"),
    (["--target", "cortex-m55", "--sram", "32MB"], "larger than the largest RAM block of cortex-m55's emulated board"),
    (["--target", "riscv32", "--flash", "17MB"], "exceeds the 16 MB of code memory of riscv32's emulated board"),
])
def test_bad_target_core_or_budget_is_a_clear_cli_error(tmp_path, capsys, model_path, argv, message):
    code = main(["compile", str(model_path), "--scheme", "last-k:3", "--out", str(tmp_path / "p"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err


def test_missing_toolchain_is_a_clear_cli_error(tmp_path, capsys, model_path, monkeypatch):
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t: None if t == "riscv64-unknown-elf-gcc" else real_which(t))
    code = main(["compile", str(model_path), "--scheme", "last-k:3", "--out", str(tmp_path / "p"),
                 "--target", "riscv32"])
    err = capsys.readouterr().err
    assert code == 2 and "riscv64-unknown-elf-gcc not found: install the Debian package gcc-riscv64-unknown-elf" in err


def test_packs_trade_flash_for_speed_and_keep_the_integers(tmp_path, capsys, model_path):
    """--packs full / words / off: the compile-time set-up packs of the frozen convs (PK_* in the ELF) take
    less flash and the device trains to the same bits; with --flash too small for full, auto links the next
    smaller packs and says so, and an explicit --packs full is a clear error naming the way out."""
    docs, runs = {}, {}
    args = ["--data", "digits", "--steps", "4", "--lr", "0.05"]
    for packs in ("full", "words", "off"):
        docs[packs] = _json(capsys, ["compile", str(model_path), "--scheme", "last-k:3", "--out", str(tmp_path / packs),
                                     "--target", "cortex-m7", "--packs", packs, "--json"])
        assert docs[packs]["packs"] == packs
        runs[packs] = _json(capsys, ["run", str(tmp_path / packs), "--target", "qemu", *args,
                                     "--workdir", str(tmp_path / f"q_{packs}"), "--json"])
    mem = {k: d["target"]["memory"] for k, d in docs.items()}
    packs_bytes = {k: m["breakdown"]["setup_packs"] for k, m in mem.items()}
    assert packs_bytes["full"] > packs_bytes["words"] > packs_bytes["off"] == 0
    for k in ("full", "words"):  # the packs are all the flash that differs
        assert mem[k]["flash_bytes"] - mem["off"]["flash_bytes"] == packs_bytes[k]
    for k in ("words", "off"):
        assert runs[k]["loss_bits"] == runs["full"]["loss_bits"] and len(runs[k]["loss_bits"]) == 4
        assert (tmp_path / f"q_{k}" / "mt_weights.bin").read_bytes() == \
            (tmp_path / "q_full" / "mt_weights.bin").read_bytes()

    flash = (mem["full"]["flash_bytes"] + mem["words"]["flash_bytes"]) // 16 * 8  # a budget takes 8-byte units
    assert mem["words"]["flash_bytes"] <= flash < mem["full"]["flash_bytes"]  # words fits, full does not
    doc = _json(capsys, ["compile", str(model_path), "--scheme", "last-k:3", "--out", str(tmp_path / "auto"),
                         "--target", "cortex-m7", "--flash", str(flash), "--json"])
    assert doc["packs"] == "words" and doc["target"]["memory"]["flash_bytes"] <= flash
    assert json.loads((tmp_path / "auto" / "report.json").read_text())["packs"] == "words"
    code = main(["compile", str(model_path), "--scheme", "last-k:3", "--out", str(tmp_path / "p"),
                 "--target", "cortex-m7", "--flash", str(flash), "--packs", "full"])
    err = capsys.readouterr().err
    assert code == 2 and "FLASH overflowed by" in err and "set-up packs (PK_*): recompile with --packs words" in err
