"""Scheme presets and their errors."""

import json

import pytest

from microtrain.scheme import SchemeError, make_scheme
from microtrain.sim.random_graph import random_graph
from microtrain.sparse.presets import load_scheme, preset, preset_names


@pytest.fixture(scope="module")
def g():
    return random_graph(0, blocks=3)


def test_generic_presets(g):
    layers = [n.name for n in g.weighted_nodes()]
    full = preset("full", g)
    assert set(full.bias_layers) == set(layers) and {w.layer for w in full.weight_layers} == set(layers)
    assert all(w.ratio == 1.0 for w in full.weight_layers)
    bias = preset("bias-only", g)
    assert list(bias.bias_layers) == layers and bias.weight_layers == ()
    cls = preset("classifier-only", g)
    assert cls.bias_layers == ("classifier",) and [w.layer for w in cls.weight_layers] == ["classifier"]
    last2 = preset("last-k:2", g)
    assert list(last2.bias_layers) == layers[-2:]
    blocks = preset("last-blocks:2", g)
    assert list(blocks.bias_layers) == [n for n in layers if n.startswith(("blocks.1.", "blocks.2."))] + ["classifier"]
    assert blocks.earliest_layer(g) == "blocks.1.pointwise1"


def test_load_scheme_file_round_trip(g, tmp_path):
    s = make_scheme(g, ["classifier"], {"blocks.2.pointwise1": 0.5})
    path = s.save(tmp_path / "s.json")
    assert load_scheme(str(path), g) == s
    assert load_scheme("last-k:1", g) == preset("last-k:1", g)


def test_errors(g, tmp_path):
    with pytest.raises(SchemeError, match="unknown scheme preset 'last-3'"):
        preset("last-3", g)
    with pytest.raises(SchemeError, match="k must be in"):
        preset("last-k:99", g)
    with pytest.raises(SchemeError, match="is for mcunet-5fps"):
        preset("mcunet-5fps/99kb", g)
    doc = make_scheme(g, ["classifier"]).to_dict()
    doc["bias_layers"] = ["blocks.9.depthwise"]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(SchemeError, match="'blocks.9.depthwise' is not a conv/linear layer"):
        load_scheme(str(tmp_path / "bad.json"), g)
    doc = make_scheme(g, [], {"classifier": 1.0}).to_dict()
    doc["weight_layers"][0]["ratio"] = 1.5
    (tmp_path / "ratio.json").write_text(json.dumps(doc))
    with pytest.raises(SchemeError, match=r"ratio 1.5 is outside \(0, 1\]"):
        load_scheme(str(tmp_path / "ratio.json"), g)
    with pytest.raises(SchemeError, match=r"outside \(0, 1\]"):
        make_scheme(g, [], {"classifier": 0.0})
    with pytest.raises(SchemeError, match="scheme file not found"):
        load_scheme(str(tmp_path / "missing.json"), g)


def test_every_preset_name_is_listed():
    names = preset_names()
    for n in ("full", "bias-only", "classifier-only", "mcunet-5fps/49kb", "mcunet-5fps/99kb", "mcunet-5fps/148kb",
              "mbv2-w0.35/99kb", "mbv2-w0.35/138kb", "proxyless-w0.3/98kb", "proxyless-w0.3/148kb"):
        assert n in names


@pytest.mark.zoo
def test_published_presets_on_zoo_models():
    from conftest import zoo_path_or_skip

    from microtrain.frontend.mcu_zoo import import_zoo_model

    g = import_zoo_model(zoo_path_or_skip("mcunet-5fps"))
    convs = [n.name for n in g.weighted_nodes()][:-1]
    s = preset("mcunet-5fps/49kb", g)
    assert len(s.bias_layers) == 21 and s.bias_layers[-1] == "classifier"
    assert list(s.bias_layers[:-1]) == convs[-20:]
    ratios = {w.layer: w.ratio for w in s.weight_layers}
    assert ratios == {convs[24]: 0.25, convs[27]: 0.5, convs[30]: 0.5, "classifier": 1.0}
    s99 = preset("mcunet-5fps/99kb", g)
    assert {w.layer: w.ratio for w in s99.weight_layers}[convs[36]] == 0.125
    with pytest.raises(SchemeError, match="is for mbv2-w0.35"):
        preset("mbv2-w0.35/99kb", g)
