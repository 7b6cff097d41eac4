"""Issue 11: every bad input named in the issue (and its siblings) ends in a one-line error with
exit code 2, or in a correct result, never in a traceback or a silently wrong model.

Each test runs the CLI in-process (``microtrain.cli.main``); an exception escaping ``main`` is
the traceback a user would see, so it fails the test."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from microtrain.cli import main
from microtrain.ir import ModelFileError, load_graph, save_graph
from microtrain.sim.random_graph import random_graph


def cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one CLI call; argparse's SystemExit counts as its code."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    """The error line of stderr (progress lines before it are allowed); exactly one."""
    lines = [ln for ln in err.strip().splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A small int8 model (10 classes, 8x8 gray) as a microtrain .json/.npz."""
    path = tmp_path_factory.mktemp("tiny") / "tiny"
    save_graph(random_graph(0, resolution=8, channels=1, blocks=1, classes=10), path)
    return path.with_suffix(".json")


def _mutate_json(src: Path, dst: Path, edit) -> Path:
    doc = json.loads(src.read_text())
    edit(doc)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(doc))
    shutil.copy(src.with_suffix(".npz"), dst.with_suffix(".npz"))
    return dst


def _activation(doc: dict, index: int = 1) -> dict:
    """The index-th computed per-tensor int8 tensor of a model document."""
    acts = [t for t in doc["tensors"] if not t["const"] and t.get("quant") and t["quant"]["axis"] is None]
    return acts[index]


# --- numbers on the command line ---------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["run", "P", "--data", "digits", "--steps", "5", "--lr", "nan"], "--lr"),
    (["run", "P", "--data", "digits", "--steps", "5", "--lr=-1"], "--lr"),
    (["run", "P", "--data", "digits", "--steps", "5", "--lr", "inf"], "--lr"),
    (["run", "P", "--data", "digits", "--steps", "5", "--lr", "0"], "--lr"),
    (["run", "P", "--data", "digits", "--steps=-3"], "--steps"),
    (["run", "P", "--data", "digits", "--steps", "5", "--eval=-1"], "--eval"),
    (["run", "P", "--data", "digits", "--steps", "5", "--seed=-1"], "--seed"),
    (["run", "P", "--data", "digits", "--steps", "5", "--sram=-5KB"], "--sram"),
    (["finetune", "default", "--data", "digits", "--out", "o", "--lr", "nan"], "--lr"),
    (["finetune", "default", "--data", "digits", "--out", "o", "--lr=-0.1"], "--lr"),
    (["finetune", "default", "--data", "digits", "--out", "o", "--epochs", "0"], "--epochs"),
    (["finetune", "default", "--data", "digits", "--out", "o", "--classes", "0"], "--classes"),
    (["finetune", "default", "--data", "digits", "--out", "o", "--resolution=-8"], "--resolution"),
    (["finetune", "default", "--data", "digits", "--out", "o", "--limit", "0"], "--limit"),
    (["finetune", "default", "--data", "digits", "--out", "o", "--threads", "0"], "--threads"),
    (["plan", "default", "--data", "digits", "--budget=-5KB"], "--budget"),
    (["plan", "default", "--data", "digits", "--budget", "0"], "--budget"),
    (["plan", "default", "--data", "digits", "--budget", "lots"], "--budget"),
    (["plan", "default", "--data", "digits", "--budget", "64KB", "--lr", "nan"], "--lr"),
    (["plan", "default", "--data", "digits", "--budget", "64KB", "--workers", "0"], "--workers"),
    (["compile", "default", "--scheme", "full", "--out", "o", "--budget=-5KB"], "--budget"),
    (["compile", "default", "--scheme", "full", "--out", "o", "--classes=-2"], "--classes"),
    (["quantize", "x.npz", "--arch", "default", "--calib-data", "digits", "--out", "o", "--percentile", "150"],
     "--percentile"),
    (["predict", "default", "x.png", "--top", "0"], "--top"),
    (["eval", "default", "--data", "digits", "--limit=-4"], "--limit"),
])
def test_bad_numbers_are_one_line_errors(capsys, monkeypatch, tmp_path, argv, message):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the project
    code, out, err = cli(capsys, argv)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert message in line and len(err.strip().splitlines()) == 1, err


# --- model files ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0.5, True, "3", None, 1e300])
def test_zero_point_must_be_an_integer_in_range(tiny, tmp_path, capsys, value):
    def edit(doc):
        _activation(doc)["quant"]["zero_point"] = [value]

    bad = _mutate_json(tiny, tmp_path / "bad.json", edit)
    with pytest.raises(ModelFileError, match="zero point"):
        load_graph(bad)
    code, _, err = cli(capsys, ["inspect", str(bad)])
    assert code == 2 and "zero point" in one_line_error(err)


@pytest.mark.parametrize("preprocess, ok", [
    ({"resolution": [9, 9], "channels": 1}, False),      # neither the input's size nor its bytes
    ({"resolution": [8, 8], "channels": 2}, False),      # channels other than 1 or 3
    ({"resolution": [8, 8.5], "channels": 1}, False),    # not integers
    ({"resolution": [8, 8], "channels": 3}, False),      # 192 values for a 64-value input
    ({"resolution": [8, 8], "channels": 1}, True),       # the input itself
    ({"resolution": [1, 64], "channels": 1}, True),      # the input's bytes as one row (a reshape)
])
def test_preprocess_must_make_the_input(tiny, tmp_path, capsys, preprocess, ok):
    def edit(doc):
        doc["meta"]["preprocess"] = {**preprocess, "range": [0.0, 1.0]}

    bad = _mutate_json(tiny, tmp_path / "pre.json", edit)
    code, _, err = cli(capsys, ["inspect", str(bad)])
    if ok:
        assert code == 0, err
    else:
        assert code == 2 and "meta.preprocess" in one_line_error(err)


@pytest.mark.parametrize("value", [1e-300, 1e30])
def test_unrepresentable_requantization_multiplier_is_refused_before_anything_is_written(tiny, tmp_path, capsys,
                                                                                        value):
    def edit(doc):
        _activation(doc)["quant"]["scale"] = [value]

    bad = _mutate_json(tiny, tmp_path / "bad.json", edit)
    out = tmp_path / "proj"
    code, _, err = cli(capsys, ["compile", str(bad), "--scheme", "last-k:2", "--out", str(out)])
    assert code == 2 and "multiplier" in one_line_error(err)
    assert not out.exists()
    for verb in (["inspect", str(bad)], ["eval", str(bad), "--data", "digits", "--limit", "10"]):
        code, _, err = cli(capsys, verb)
        assert code == 2 and "multiplier" in one_line_error(err)


def test_non_finite_float_constant_is_refused(tiny, tmp_path, capsys):
    def edit(doc):
        _activation(doc)["quant"]["scale"] = ["NaN"]

    bad = _mutate_json(tiny, tmp_path / "nan.json", edit)
    code, _, err = cli(capsys, ["inspect", str(bad)])
    assert code == 2 and "scale" in one_line_error(err)


def test_compile_out_naming_an_existing_file(tiny, tmp_path, capsys):
    target = tmp_path / "afile"
    target.write_text("keep me")
    code, _, err = cli(capsys, ["compile", str(tiny), "--scheme", "last-k:2", "--out", str(target)])
    assert code == 2 and "--out" in one_line_error(err)
    assert target.read_text() == "keep me"


def test_nan_float_checkpoint_is_refused_by_quantize(tmp_path, capsys):
    from microtrain.zoo.default_cnn import build_default_cnn

    torch.manual_seed(0)
    state = {k: v.numpy().copy() for k, v in build_default_cnn(num_classes=10).state_dict().items()}
    name = next(k for k in state if k.endswith(".weight") and state[k].ndim == 4)
    state[name].flat[3] = np.nan
    np.savez(tmp_path / "nan.npz", **state)
    out = tmp_path / "q" / "model"
    code, _, err = cli(capsys, ["quantize", str(tmp_path / "nan.npz"), "--arch", "default", "--calib-data",
                                "digits", "--calib-samples", "20", "--out", str(out)])
    assert code == 2
    line = one_line_error(err)
    assert name in line and "NaN" in line
    assert not out.with_suffix(".json").exists()


def test_raw_pickle_is_not_a_model_file_we_accept(tmp_path, capsys):
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"first_conv": None, "blocks": []}))
    code, _, err = cli(capsys, ["inspect", str(raw)])
    line = one_line_error(err)
    assert code == 2 and "not a model file microtrain accepts" in line and "legacy" not in line


# --- datasets ---------------------------------------------------------------------------------

def _folder(root: Path, sizes=((8, 8),) * 6, mode="L") -> Path:
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        d = root / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        shape = (h, w) if mode == "L" else (h, w, 3)
        Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8), mode).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def tiny_project(tiny, tmp_path_factory) -> Path:
    """The tiny model compiled for the host (classifier-only): what `run` trains."""
    proj = tmp_path_factory.mktemp("proj") / "tiny"
    assert main(["compile", str(tiny), "--scheme", "classifier-only", "--out", str(proj)]) == 0
    return proj


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_in_a_class_folder_is_named(tmp_path, capsys, damage, tiny_project):
    root = _folder(tmp_path / "imgs", sizes=((32, 32),) * 10)
    victim = root / "c1" / "3.png"
    if damage == "garbage":
        victim.write_bytes(b"this is not an image at all")
    else:
        victim.write_bytes(victim.read_bytes()[:60])
    from microtrain.data.datasets import load_dataset

    with pytest.raises(ValueError, match="3.png"):
        load_dataset(str(root), "all")
    for argv in (["eval", "default", "--data", str(root)],
                 ["finetune", "default", "--data", str(root), "--classes", "2", "--out", str(tmp_path / "ft")],
                 ["quantize", "x.npz", "--arch", "default", "--calib-data", str(root), "--out", str(tmp_path / "q")],
                 ["plan", "default", "--data", str(root), "--budget", "64KB", "--out", str(tmp_path / "s.json")],
                 ["run", str(tiny_project), "--data", str(root), "--steps", "2", "--workdir", str(tmp_path / "w")]):
        if argv[0] == "quantize":
            from microtrain.zoo.default_cnn import build_default_cnn, save_state_npz

            save_state_npz(build_default_cnn(num_classes=10).eval(), tmp_path / "x.npz")
            argv[1] = str(tmp_path / "x.npz")
        code, _, err = cli(capsys, argv)
        assert code == 2 and "3.png" in one_line_error(err), argv


def test_truncated_data_npz(tmp_path, capsys):
    path = tmp_path / "data.npz"
    np.savez(path, images=np.zeros((40, 8, 8), np.uint8), labels=np.arange(40) % 4)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    from microtrain.data.datasets import load_dataset

    with pytest.raises(ValueError, match="data.npz"):
        load_dataset(str(path), "train")
    code, _, err = cli(capsys, ["eval", "default", "--data", str(path)])
    assert code == 2 and "data.npz" in one_line_error(err)


def test_three_image_npz_says_the_split_is_too_small(tmp_path, capsys):
    path = tmp_path / "three.npz"
    np.savez(path, images=np.zeros((3, 28, 28), np.uint8), labels=np.array([0, 1, 2]))
    code, _, err = cli(capsys, ["eval", "default", "--data", str(path)])
    line = one_line_error(err)
    assert code == 2 and "is empty" not in line and "test split" in line and "3 images" in line
    code, out, err = cli(capsys, ["eval", "default", "--data", str(path), "--split", "all", "--json"])
    assert code == 0 and json.loads(out)["samples"] == 3


def test_run_eval_on_a_three_image_npz_says_the_test_split_is_too_small(tmp_path, capsys, tiny_project):
    path = tmp_path / "three.npz"
    np.savez(path, images=np.zeros((3, 8, 8), np.uint8), labels=np.array([0, 1, 2]),
             class_names=np.array([f"c{i}" for i in range(10)]))  # the head's 10 classes, 3 images
    code, _, err = cli(capsys, ["run", str(tiny_project), "--data", str(path), "--steps", "2", "--eval", "2",
                                "--workdir", str(tmp_path / "w")])
    line = one_line_error(err)
    assert code == 2 and "is empty" not in line and "test split" in line and "3 images" in line
    assert not (tmp_path / "w").exists()  # refused before anything was built


def test_mixed_image_sizes_and_modes_are_stated(tmp_path, capsys):
    root = _folder(tmp_path / "mixed", sizes=((8, 8), (8, 8), (12, 10), (8, 8)))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8), "RGB").save(root / "c0" / "rgb.png")
    from microtrain.data.datasets import load_dataset

    ds = load_dataset(str(root), "all")
    assert any("resized" in n and "12" in n for n in ds.notes), ds.notes
    code, _, err = cli(capsys, ["eval", "default", "--data", str(root), "--split", "all"])
    assert code == 0
    assert "note:" in err and "resize 8x8 -> 28x28" in err and "12" in err


def test_run_states_the_conversions_it_makes(tmp_path, capsys):
    from conftest import require_tool

    require_tool("gcc", "gcc")
    proj = tmp_path / "proj"
    assert cli(capsys, ["compile", "default", "--classes", "10", "--scheme", "classifier-only", "--out",
                        str(proj)])[0] == 0
    code, _, err = cli(capsys, ["run", str(proj), "--data", "digits", "--steps", "2", "--lr", "0.001"])
    assert code == 0 and "note: resize 8x8 -> 28x28" in err


# --- classes ----------------------------------------------------------------------------------

def test_training_needs_classes_when_the_dataset_differs_from_the_head(tiny, tmp_path, capsys):
    path = tmp_path / "three.npz"
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (60, 8, 8)).astype(np.uint8), labels=np.arange(60) % 3)
    code, _, err = cli(capsys, ["finetune", str(tiny), "--data", str(path), "--out", str(tmp_path / "ft"),
                                "--epochs", "1"])
    line = one_line_error(err)
    assert code == 2 and "--classes 3" in line and "10" in line
    assert not (tmp_path / "ft" / "model.json").exists()
    code, _, err = cli(capsys, ["finetune", str(tiny), "--data", str(path), "--classes", "3", "--out",
                                str(tmp_path / "ft"), "--epochs", "1", "--lr", "0.01", "--json"])
    assert code == 0, err


def test_finetune_zoo_model_on_digits_without_classes(capsys, tmp_path):
    from conftest import zoo_path_or_skip

    zoo_path_or_skip("mcunet-5fps")
    code, _, err = cli(capsys, ["finetune", "mcunet-5fps", "--data", "digits", "--out", str(tmp_path / "ft")])
    line = one_line_error(err)
    assert code == 2 and "1000" in line and "--classes 10" in line


# --- finetune checkpoints ---------------------------------------------------------------------

class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("kind", ["garbage", "truncated", "hostile", "wrong-structure", "flipped-byte"])
def test_bad_checkpoint_in_out_folder_is_named_with_how_to_start_over(tiny, tmp_path, capsys, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    args = ["finetune", str(tiny), "--data", "digits", "--classes", "10", "--limit", "64", "--test-limit", "20",
            "--epochs", "2", "--batch-size", "16", "--lr", "0.01", "--out", "ft"]
    assert cli(capsys, [*args, "--stop-after", "5"])[0] == 0
    ckpt = tmp_path / "ft" / "checkpoint.pt"
    if kind == "garbage":
        ckpt.write_bytes(b"\x00\x01garbage" * 10)
    elif kind == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:300])
    elif kind == "hostile":
        torch.save({"signature": "x", "trainer": _Boom()}, ckpt)
    elif kind == "wrong-structure":
        torch.save({"signature": 3, "trainer": [1, 2]}, ckpt)
    else:  # one bit of the saved trainer state: torch's zip reader would not notice (no CRC check)
        raw = bytearray(ckpt.read_bytes())
        inner = raw.index(b"PK\x03\x04", 4)  # the state is a torch.save archive inside the outer one
        raw[inner + 200] ^= 0x01
        ckpt.write_bytes(bytes(raw))
    code, _, err = cli(capsys, args)
    line = one_line_error(err)
    assert code == 2 and "checkpoint.pt" in line and "--restart" in line
    assert not (tmp_path / "PWNED").exists()
    assert cli(capsys, [*args, "--restart"])[0] == 0
    assert (tmp_path / "ft" / "model.json").exists()


def test_zip_bomb_like_npz_member_is_refused_cleanly(tiny, tmp_path, capsys):
    """A model .npz whose member claims another dtype than the graph says is an error, not a cast."""
    bad = tmp_path / "m.json"
    shutil.copy(tiny, bad)
    with np.load(tiny.with_suffix(".npz")) as z:
        arrays = {k: z[k] for k in z.files}
    name = next(k for k, v in arrays.items() if v.dtype == np.int8)
    arrays[name] = arrays[name].astype(np.float64)
    with zipfile.ZipFile(bad.with_suffix(".npz"), "w") as zf:
        for k, v in arrays.items():
            with zf.open(f"{k}.npy", "w") as f:
                np.lib.format.write_array(f, v)
    code, _, err = cli(capsys, ["inspect", str(bad)])
    assert code == 2 and name in one_line_error(err)
