"""Bring your own PyTorch model from the command line: `microtrain quantize --arch FILE.py:Class`
(+ --arch-args, --input-shape) with .pt / .safetensors weights, a torch.export .pt2 of the same
network, and the one-line errors for what cannot be imported."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
import torch
from byom_support import KWS, RESIDUAL, cli, cli_error, fashion, float_accuracy, train_float
from safetensors.torch import save_file

from microtrain.frontend.user_model import load_arch
from microtrain.ir import load_graph


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The two user networks trained briefly in float, saved as a user would save them."""
    d = tmp_path_factory.mktemp("byom")
    torch.manual_seed(0)  # the initial weights: the same checkpoint whatever ran before in this process
    res = train_float(load_arch(RESIDUAL, {"width": 8}), "image")
    torch.save(res.state_dict(), d / "residual.pt")
    torch.export.save(torch.export.export(res, (torch.zeros(1, 1, 28, 28),)), d / "residual.pt2")
    torch.manual_seed(0)
    kws = train_float(load_arch(KWS, {"width": 24}), "signal")
    save_file(kws.state_dict(), d / "kws.safetensors")
    torch.export.save(torch.export.export(kws, (torch.zeros(1, 28, 28),)), d / "kws.pt2")
    return d, res, kws


def _quantize(capsys, model, out, *extra):
    return cli(capsys, ["quantize", str(model), *extra, "--calib-data", "fashion-mnist", "--calib-samples", "200",
                        "--out", str(out)])


def _same_graph(a, b):
    assert [n.op for n in a.nodes] == [n.op for n in b.nodes]
    ca = [t for t in a.tensors.values() if t.is_const]
    cb = [t for t in b.tensors.values() if t.is_const]
    assert [t.shape for t in ca] == [t.shape for t in cb]
    for x, y in zip(ca, cb, strict=True):
        np.testing.assert_array_equal(x.data, y.data, err_msg=f"{x.name} vs {y.name}")
        assert x.quant == y.quant


def test_residual_net_from_py_and_pt2(trained, capsys):
    d, module, _ = trained
    doc = _quantize(capsys, d / "residual.pt", d / "res_py", "--arch", RESIDUAL, "--arch-args", '{"width": 8}')
    assert doc["source"] == "torch.fx" and doc["layers"] == 5 and doc["num_classes"] == 10
    graph = load_graph(doc["model"])
    assert graph.meta["preprocess"] == {"resolution": [28, 28], "channels": 1, "range": [0.0, 1.0]}
    # int8 accuracy on 500 held-out images within 3 points of the float network's
    test = fashion("test", 500)
    ev = cli(capsys, ["eval", doc["model"], "--data", "fashion-mnist", "--limit", "500", "--engine", "batched"])
    ref = float_accuracy(module, "image", test.images, test.labels)
    assert ref > 0.5 and abs(ev["accuracy"] - ref) < 0.03, (ev["accuracy"], ref)
    # the .pt2 program of the same network, no Python source: the same int8 model
    pt2 = _quantize(capsys, d / "residual.pt2", d / "res_pt2")
    assert pt2["source"] == "torch.export"
    _same_graph(graph, load_graph(pt2["model"]))


def test_kws_conv1d_from_safetensors_and_pt2(trained, capsys):
    d, _, module = trained
    doc = _quantize(capsys, d / "kws.safetensors", d / "kws_py", "--arch", KWS, "--arch-args", '{"width": 24}',
                    "--input-shape", "1,28,28")
    graph = load_graph(doc["model"])
    # Conv1d as a conv2d of height 1; the input is the image itself: 28 frames (rows) of 28 features
    assert graph.tensors["input"].shape == (1, 1, 28, 28)
    assert graph.tensors["conv1.weight"].shape == (24, 1, 5, 28) and graph.node("dw").attrs["groups"] == 24
    assert graph.node("dw").attrs["stride"] == (1, 2) and graph.node("conv1").attrs["padding"] == (0, 2, 0, 2)
    assert graph.meta["preprocess"]["resolution"] == [28, 28]
    test = fashion("test", 500)
    ev = cli(capsys, ["eval", doc["model"], "--data", "fashion-mnist", "--limit", "500", "--engine", "batched"])
    ref = float_accuracy(module, "signal", test.images, test.labels)
    assert ref > 0.5 and abs(ev["accuracy"] - ref) < 0.03, (ev["accuracy"], ref)
    pt2 = _quantize(capsys, d / "kws.pt2", d / "kws_pt2")
    _same_graph(graph, load_graph(pt2["model"]))


def _user_file(tmp_path, body: str, name="net.py") -> str:
    path = tmp_path / name
    path.write_text("import torch\nfrom torch import nn\nimport torch.nn.functional as F\n\n" + textwrap.dedent(body))
    return str(path)


UNSUPPORTED = {
    "lstm": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                self.rnn = nn.LSTM(4, 4)
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                y = self.conv(x).mean((2, 3))
                return self.fc(self.rnn(y)[0])
        """, r"unsupported module nn\.LSTM at 'rnn'.*net\.py:\d+: return self\.fc\(self\.rnn\(y\)\[0\]\)"),
    "gelu": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                self.act = nn.GELU()
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                return self.fc(self.act(self.conv(x)).mean((2, 3)))
        """, r"unsupported module nn\.GELU at 'act'.*net\.py:\d+: return self\.fc\(self\.act"),
    "sort": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                self.fc = nn.Linear(4, 2)
            def forward(self, x):
                y = torch.sort(self.conv(x), dim=1)[0]
                return self.fc(y.mean((2, 3)))
        """, r"unsupported function torch\.sort at fx node 'sort'.*net\.py:\d+: y = torch\.sort"),
    "value-dependent flow": ("""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(16, 2)
            def forward(self, x):
                if x.sum() > 0:
                    x = x * 2
                return self.fc(x.flatten(1))
        """, r"torch\.fx cannot trace Net.*torch\.export cannot capture Net either"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_layers_are_one_line_errors(tmp_path, capsys, case):
    body, pattern = UNSUPPORTED[case]
    arch = _user_file(tmp_path, body) + ":Net"
    module = load_arch(arch)
    torch.save(module.state_dict(), tmp_path / "w.pt")
    line = cli_error(capsys, ["quantize", str(tmp_path / "w.pt"), "--arch", arch, "--input-shape", "1,1,4,4",
                              "--calib-data", "digits", "--out", str(tmp_path / "o")])
    assert re.search(pattern, line), line


def test_checkpoint_mismatch_and_bad_arguments(trained, tmp_path, capsys):
    d, _, _ = trained
    q = ["--calib-data", "digits", "--out", str(tmp_path / "o")]
    line = cli_error(capsys, ["quantize", str(d / "residual.pt"), "--arch", RESIDUAL, "--arch-args",
                              '{"width": 4, "classes": 5}', *q])
    assert "does not match --arch" in line and "stem.0.weight [8, 1, 3, 3] vs [4, 1, 3, 3]" in line, line
    line = cli_error(capsys, ["quantize", str(d / "kws.safetensors"), "--arch", RESIDUAL, *q])
    assert "missing stem.0.weight" in line and "unexpected bn1.bias, bn1.running_mean" in line, line
    assert "not JSON" in cli_error(capsys, ["quantize", str(d / "residual.pt"), "--arch", RESIDUAL,
                                            "--arch-args", "{width: 8}", *q])
    assert "defines no class or function 'Nope'" in cli_error(
        capsys, ["quantize", str(d / "residual.pt"), "--arch", RESIDUAL.replace("ResidualPoolNet", "Nope"), *q])
    assert "needs no --arch" in cli_error(capsys, ["quantize", str(d / "kws.pt2"), "--arch", KWS, *q])
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    assert "not a readable .safetensors" in cli_error(
        capsys, ["quantize", str(tmp_path / "bad.safetensors"), "--arch", RESIDUAL, *q])


def test_hostile_pt2_is_refused_without_running_it(trained, tmp_path, capsys):
    """A .pt2 whose weight payload is a pickle that would run code: refused, nothing runs."""
    import pickle
    import zipfile

    d, _, _ = trained
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    src, dst = zipfile.ZipFile(d / "kws.pt2"), zipfile.ZipFile(tmp_path / "evil.pt2", "w")
    for item in src.infolist():
        data = src.read(item.filename)
        if item.filename.endswith("/data/weights/weight_0"):
            data = pickle.dumps(Evil())
        if item.filename.endswith("model_weights_config.json"):
            data = data.replace(b'"use_pickle": false', b'"use_pickle": true')
        dst.writestr(item, data)
    dst.close()
    line = cli_error(capsys, ["quantize", str(tmp_path / "evil.pt2"), "--calib-data", "digits",
                              "--out", str(tmp_path / "o")])
    assert "torch.export.load refused it" in line and not marker.exists(), line


def test_linear_only_network_on_flattened_images(tmp_path, capsys):
    """An MLP (no conv): input [1, 64], fed 8x8 digits flattened in HWC order."""
    arch = _user_file(tmp_path, """
        class MLP(nn.Module):
            def __init__(self, hidden=32):
                super().__init__()
                self.fc1 = nn.Linear(64, hidden)
                self.fc2 = nn.Linear(hidden, 10)
            def forward(self, x):
                return self.fc2(F.hardtanh(self.fc1(x), 0.0, 2.0))
        """) + ":MLP"
    torch.manual_seed(0)
    torch.save(load_arch(arch).state_dict(), tmp_path / "w.pt")
    doc = cli(capsys, ["quantize", str(tmp_path / "w.pt"), "--arch", arch, "--input-shape", "1,64", "--calib-data",
                       "digits", "--out", str(tmp_path / "mlp")])
    graph = load_graph(doc["model"])
    assert graph.tensors["input"].shape == (1, 64) and [n.op.value for n in graph.nodes] == ["fully_connected"] * 2
    assert graph.meta["preprocess"]["resolution"] == [8, 8]
    assert graph.node("fc1").attrs["act_min"] == graph.tensors["fc1.out"].quant.z  # hardtanh(0, 2) as the clamp
    # the int8 model predicts what the float module predicts on the images flattened in HWC order
    from microtrain.data.datasets import load_dataset
    from microtrain.data.preprocess import preprocess
    from microtrain.interp.batched import infer_batch

    test = load_dataset("digits", "test", limit=200, seed=0)
    ours = infer_batch(graph, preprocess(test.images, graph)).reshape(len(test.images), -1).argmax(1)
    with torch.no_grad():
        theirs = load_weights_into(arch, tmp_path / "w.pt")(
            torch.from_numpy(test.images.reshape(len(test.images), -1).astype(np.float32) / 255.0)).argmax(1)
    assert np.mean(ours == theirs.numpy()) >= 0.95, np.mean(ours == theirs.numpy())
    ev = cli(capsys, ["eval", doc["model"], "--data", "digits", "--limit", "50"])
    assert ev["samples"] == 50


def load_weights_into(arch: str, path):
    module = load_arch(arch)
    module.load_state_dict(torch.load(path, weights_only=True))
    return module.eval()
