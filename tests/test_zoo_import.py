"""The MCU-zoo importer: structure checks, graph shape, counts against the README table,
error messages naming the layer, and the new-head helper. A tiny synthetic zoo dict covers
everything that does not need the pretrained files."""

from __future__ import annotations

import copy
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import zoo_path_or_skip

from microtrain.frontend.heads import new_head
from microtrain.frontend.mcu_zoo import import_zoo_model, load_zoo_dict, published_float_forward, zoo_dict_to_graph
from microtrain.interp.reference import infer
from microtrain.ir import ModelFileError, Op, verify_graph
from microtrain.models import load_model


def _conv(rng, cin, cout, hw, k, stride, groups, x, y):
    out_hw = (hw + 2 * (k // 2) - k) // stride + 1
    return {"in_channel": cin, "in_shape": hw, "out_channel": cout, "out_shape": out_hw, "kernel_size": (k, k),
            "stride": stride, "groups": groups, "depthwise": groups > 1, "act": None,
            "params": {"weight": rng.integers(-127, 128, (cout, cin // groups, k, k)).astype(np.int8),
                       "bias": rng.integers(-2000, 2000, cout).astype(np.int32),
                       "w_scales": rng.uniform(0.002, 0.01, cout).astype(np.float32),
                       "x_scale": x[0], "x_zero": x[1], "y_scale": y[0], "y_zero": y[1]}}


def tiny_zoo_dict(seed: int = 0) -> dict:
    """first_conv 3->4 (s2), block0 dw+pw2 with residual, block1 pw1/dw k5 s2/pw2, classifier 6->5; 12x12 input."""
    rng = np.random.default_rng(seed)
    q_in, q_relu6, q_a, q_b, q_sum = (1 / 127.5, 0), (6 / 255, -128), (0.05, 3), (0.06, -5), (0.08, 1)
    return {
        "first_conv": _conv(rng, 3, 4, 12, 3, 2, 1, q_in, q_a),
        "blocks": [
            {"pointwise1": None, "depthwise": _conv(rng, 4, 4, 6, 3, 1, 4, q_a, q_relu6),
             "pointwise2": _conv(rng, 4, 4, 6, 1, 1, 1, q_relu6, q_b),
             "residual": {"in_channel": 4, "in_shape": 6, "params": {"x_scale": q_a[0], "x_zero": q_a[1],
                                                                      "y_scale": q_sum[0], "y_zero": q_sum[1]}},
             "se": None},
            {"pointwise1": _conv(rng, 4, 8, 6, 1, 1, 1, q_sum, q_relu6),
             "depthwise": _conv(rng, 8, 8, 6, 5, 2, 8, q_relu6, q_relu6),
             "pointwise2": _conv(rng, 8, 6, 3, 1, 1, 1, q_relu6, q_b), "residual": None, "se": None},
        ],
        "feature_mix": None,
        "classifier": {k: v for k, v in _conv(rng, 6, 5, 1, 1, 1, 1, q_b, (0.1, -2)).items()
                       if k in ("in_channel", "out_channel", "kernel_size", "stride", "groups", "params")},
    }


def test_tiny_model_graph_structure() -> None:
    g = zoo_dict_to_graph(tiny_zoo_dict(), "tiny.pkl")
    verify_graph(g)
    assert [n.name for n in g.nodes] == [
        "first_conv", "blocks.0.depthwise", "blocks.0.pointwise2", "blocks.0.residual", "blocks.1.pointwise1",
        "blocks.1.depthwise", "blocks.1.pointwise2", "pool", "flatten", "classifier"]
    assert [n.op for n in g.nodes[-3:]] == [Op.GLOBAL_AVG_POOL, Op.RESHAPE, Op.FULLY_CONNECTED]
    res = g.node("blocks.0.residual")
    assert res.inputs == ("first_conv.out", "blocks.0.pointwise2.out")
    dw = g.node("blocks.1.depthwise")
    assert dw.attrs["groups"] == 8 and dw.attrs["stride"] == (2, 2) and dw.attrs["padding"] == (2, 2, 2, 2)
    d = tiny_zoo_dict()
    w_oihw = d["blocks"][1]["depthwise"]["params"]["weight"]
    assert np.array_equal(g.tensors["blocks.1.depthwise.weight"].data, w_oihw.transpose(0, 2, 3, 1))
    assert g.tensors["classifier.weight"].shape == (5, 6)
    assert g.tensors["pool.out"].quant == g.tensors["blocks.1.pointwise2.out"].quant
    assert g.meta["preprocess"] == {"resolution": [12, 12], "channels": 3, "range": [-1.0, 1.0]}


def test_tiny_model_interpreter_matches_published_float_rule() -> None:
    """Random images through a random tiny model: fixed point vs the zoo's float rule.
    Seen: max diff 1 LSB over 20 images (5 logits each)."""
    d = tiny_zoo_dict(3)
    g = zoo_dict_to_graph(d, "tiny.pkl")
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(20):
        x = rng.integers(-128, 128, (1, 12, 12, 3)).astype(np.int8)
        diffs.append(np.abs(infer(g, x).astype(int) - published_float_forward(d, x).astype(int)))
    assert np.max(diffs) <= 2


def _expect_error(d: dict, *fragments: str) -> None:
    with pytest.raises(ModelFileError) as exc:
        zoo_dict_to_graph(d, "m.pkl")
    for f in fragments:
        assert f in str(exc.value), str(exc.value)


def test_wrong_weight_shape_names_the_layer() -> None:
    d = tiny_zoo_dict()
    d["blocks"][1]["depthwise"]["params"]["weight"] = np.zeros((8, 2, 5, 5), np.int8)
    _expect_error(d, "m.pkl: blocks.1.depthwise:", "weight shape (8, 2, 5, 5) does not match in_channel 8")


def test_weight_in_channel_mismatch_with_input() -> None:
    d = tiny_zoo_dict()
    d["blocks"][1]["pointwise1"]["in_channel"] = 6
    _expect_error(d, "blocks.1.pointwise1:", "in_channel 6 does not match its input's 4 channels")


def test_bias_length_mismatch() -> None:
    d = tiny_zoo_dict()
    d["blocks"][0]["pointwise2"]["params"]["bias"] = np.zeros(3, np.int32)
    _expect_error(d, "blocks.0.pointwise2:", "bias length (3,) does not match out_channel 4")


def test_w_scales_length_mismatch() -> None:
    d = tiny_zoo_dict()
    d["first_conv"]["params"]["w_scales"] = np.ones(5, np.float32)
    _expect_error(d, "first_conv:", "w_scales has shape (5,)")


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_scales(bad: float) -> None:
    d = tiny_zoo_dict()
    ws = d["blocks"][1]["pointwise2"]["params"]["w_scales"].copy()
    ws[2] = bad
    d["blocks"][1]["pointwise2"]["params"]["w_scales"] = ws
    _expect_error(d, "blocks.1.pointwise2:", "w_scales must be finite and positive")
    d = tiny_zoo_dict()
    d["blocks"][0]["residual"]["params"]["y_scale"] = bad
    _expect_error(d, "blocks.0.residual:", "y_scale")


def test_quantization_chain_mismatch() -> None:
    d = tiny_zoo_dict()
    d["blocks"][1]["pointwise1"]["params"]["x_zero"] = 0
    _expect_error(d, "blocks.1.pointwise1:", "x_scale/x_zero", "does not match its input 'blocks.0.residual.out'")
    d = tiny_zoo_dict()
    d["blocks"][0]["residual"]["params"]["x_scale"] = 0.5
    _expect_error(d, "blocks.0.residual:", "shortcut x_scale/x_zero")
    d = tiny_zoo_dict()
    d["classifier"]["params"]["x_scale"] = 0.07
    _expect_error(d, "pool:", "classifier x_scale/x_zero")


def test_missing_keys_and_bad_types() -> None:
    d = tiny_zoo_dict()
    del d["blocks"][1]["depthwise"]["params"]["y_zero"]
    _expect_error(d, "blocks.1.depthwise:", "missing key(s) y_zero")
    d = tiny_zoo_dict()
    del d["classifier"]
    _expect_error(d, "model:", "missing key(s) classifier")
    d = tiny_zoo_dict()
    d["first_conv"]["params"]["weight"] = d["first_conv"]["params"]["weight"].astype(np.float32)
    _expect_error(d, "first_conv:", "weight must be int8, is float32")
    d = tiny_zoo_dict()
    d["blocks"][0]["depthwise"]["params"]["x_zero"] = 300
    _expect_error(d, "blocks.0.depthwise:", "x_zero = 300 is outside int8")


def test_values_of_the_wrong_kind() -> None:
    d = tiny_zoo_dict()
    d["blocks"][1]["pointwise1"]["out_channel"] = "eight"
    _expect_error(d, "m.pkl: blocks.1.pointwise1: out_channel = 'eight' must be an integer")
    d = tiny_zoo_dict()
    d["blocks"][0]["depthwise"]["params"]["y_scale"] = [0.1]
    _expect_error(d, "blocks.0.depthwise:", "y_scale must be a number, is list")
    d = tiny_zoo_dict()
    d["blocks"][0]["depthwise"]["stride"] = (1, 2)
    _expect_error(d, "blocks.0.depthwise:", "stride (1, 2) must be one positive number")
    d = tiny_zoo_dict()
    d["blocks"][1]["depthwise"]["stride"] = (2, 2)  # PyTorch style pairs are fine
    d["blocks"][1]["depthwise"]["kernel_size"] = 5
    assert zoo_dict_to_graph(d, "m.pkl").node("blocks.1.depthwise").attrs["stride"] == (2, 2)


def test_depthwise_and_shape_consistency() -> None:
    d = tiny_zoo_dict()
    d["blocks"][1]["depthwise"]["out_shape"] = 6
    _expect_error(d, "blocks.1.depthwise:", "out_shape 6")
    d = tiny_zoo_dict()
    d["blocks"][0]["se"] = {"something": 1}
    _expect_error(d, "blocks.0.se:", "not supported")


def test_truncated_and_hostile_files(tmp_path: Path) -> None:
    good = tmp_path / "tiny.pkl"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(tiny_zoo_dict(), protocol=2))
    assert [n.name for n in import_zoo_model(good).weighted_nodes()][-1] == "classifier"
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ModelFileError, match="cut.pkl"):
        import_zoo_model(cut)
    with pytest.raises(ModelFileError, match="cut.pkl"):
        load_model(cut)

    class Hostile:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {tmp_path / 'ran'}",))

    evil_dict = tiny_zoo_dict()
    evil_dict["blocks"][0]["se"] = Hostile()
    evil = tmp_path / "evil.pkl"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(evil_dict, protocol=2))
    with pytest.raises(ModelFileError, match=r"evil.pkl:data.pkl: refusing to load global (posix|os)\.system"):
        load_model(evil)
    assert not (tmp_path / "ran").exists()


def test_new_head_keeps_backbone_and_input_quant() -> None:
    g = zoo_dict_to_graph(tiny_zoo_dict(), "tiny.pkl")
    h = new_head(g, 3, seed=7)
    w = h.tensors["classifier.weight"]
    assert w.shape == (3, 6) and w.quant.axis == 0 and len(w.quant.scale) == 3
    # Headroom: the largest initial weight of each channel sits at 127 / 2.
    assert np.all(np.abs(np.abs(w.data).max(axis=1) - 64) <= 1)
    assert np.array_equal(h.tensors["classifier.bias"].data, np.zeros(3, np.int32))
    assert h.tensors["classifier.out"].shape == (1, 3) and h.tensors["classifier.out"].quant.z == 0
    assert h.tensors["flatten.out"] == g.tensors["flatten.out"]
    for name in g.tensors:
        if not name.startswith("classifier."):
            assert h.tensors[name] == g.tensors[name], name
    assert np.array_equal(new_head(g, 3, seed=7).tensors["classifier.weight"].data, w.data)
    assert not np.array_equal(new_head(g, 3, seed=8).tensors["classifier.weight"].data, w.data)
    assert infer(h, np.zeros((1, 12, 12, 3), np.int8)).shape == (1, 3)


# --- the pretrained files -------------------------------------------------------------------

README_TABLE = {  # file: (blocks, convs, conv weights, MACs in M (one decimal), residual adds)
    "mcunet-5fps": (14, 42, 463_216, 22.5, 7),
    "mbv2-w0.35": (17, 51, 238_688, 16.6, 10),
    "proxyless-w0.3": (20, 60, 320_816, 18.6, 13),
}


@pytest.mark.zoo
@pytest.mark.parametrize("name", sorted(README_TABLE))
def test_zoo_counts_match_readme(name: str) -> None:
    """The README's convs, weights and MACs exclude the classifier (42 = 1 + 13*3 + 2 for
    MCUNet; with the classifier the weights would be 623,216), so we count the same way."""
    g = import_zoo_model(zoo_path_or_skip(name))
    verify_graph(g)
    blocks, convs, weights, macs_m, adds = README_TABLE[name]
    layers = g.weighted_nodes()
    assert layers[0].name == "first_conv" and layers[-1].name == "classifier"
    body = [n for n in layers if n.op == Op.CONV2D]
    assert len(body) == len(layers) - 1 == convs
    assert sum(g.tensors[n.inputs[1]].size for n in body) == weights
    macs = sum(g.tensors[n.inputs[1]].size * g.tensors[n.outputs[0]].shape[1] * g.tensors[n.outputs[0]].shape[2]
               for n in body)
    assert round(macs / 1e6, 1) == macs_m
    assert sum(n.op == Op.ADD for n in g.nodes) == adds
    assert len({n.name.split(".")[1] for n in g.nodes if n.name.startswith("blocks.")}) == blocks
    assert g.tensors["input"].shape == (1, 128, 128, 3)
    assert g.tensors["classifier.out"].shape == (1, 1000)
    assert g.meta["model"] == name and g.meta["preprocess"]["range"] == [-1.0, 1.0]


@pytest.mark.zoo
def test_zoo_file_mutations_give_layer_errors(tmp_path: Path) -> None:
    d = load_zoo_dict(zoo_path_or_skip("mcunet-5fps"))
    bad = copy.deepcopy(d)
    bad["blocks"][3]["depthwise"]["params"]["weight"] = np.zeros((48, 1, 3, 3), np.int8)
    _expect_error(bad, "blocks.3.depthwise: weight shape (48, 1, 3, 3)")
    bad = copy.deepcopy(d)
    bad["blocks"][5]["pointwise1"]["params"]["w_scales"] = bad["blocks"][5]["pointwise1"]["params"]["w_scales"][:-1]
    _expect_error(bad, "blocks.5.pointwise1: w_scales has shape (119,)")


@pytest.mark.zoo
@pytest.mark.parametrize("name", sorted(README_TABLE))
def test_new_head_logit_scale_is_close_to_published(name: str) -> None:
    """The std-based rule of ``new_head`` lands within 20 % of the published 1000-way heads
    (seen: 0.171 vs 0.170, 0.187 vs 0.166, 0.143 vs 0.173)."""
    g = import_zoo_model(zoo_path_or_skip(name))
    ratio = new_head(g, 1000, seed=0).tensors["classifier.out"].quant.s / g.tensors["classifier.out"].quant.s
    assert 0.8 <= ratio <= 1.2
    h = new_head(g, 10, seed=0)
    assert h.tensors["classifier.weight"].shape == (10, g.tensors["flatten.out"].shape[1])
    assert h.meta["head"]["num_classes"] == 10 and h.meta["preprocess"] == g.meta["preprocess"]
