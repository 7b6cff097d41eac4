"""An int8 .onnx (onnxruntime's QDQ) and a PT2E-quantized .pt2 are model files every verb takes by
their path, as an int8 .tflite is (``microtrain.models.IMPORTERS``): inspect, eval, predict, plan,
finetune (+ --export), compile and run give what they give for the model `quantize` writes from the
same file; a float .onnx/.pt2, an unsupported op and a missing file are the same one-line errors
in every verb."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from byom_support import RESIDUAL, cli, cli_error, user_net

from microtrain.ir import load_graph

pytest.importorskip("onnxruntime", reason="onnxruntime (the [dev] extra) makes the int8 ONNX fixture")
pt2e = pytest.importorskip("torchao.quantization.pt2e.quantize_pt2e", reason="torchao (the [dev] extra) makes the "
                                                                              "PT2E fixture")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import onnx_agreement as oa  # noqa: E402

DATA = ["--data", "digits"]


def _digits(n: int) -> np.ndarray:
    from microtrain.data.datasets import load_dataset

    return load_dataset("digits", "train", limit=n, seed=1).images


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The residual user network (seeded weights) as a float .onnx, an int8 QDQ .onnx, a float .pt2
    and a PT2E .pt2, calibrated on 64 digit images resized to its 28x28 input."""
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    from microtrain.data.preprocess import preprocess_float

    d = tmp_path_factory.mktemp("files")
    net = user_net(RESIDUAL, {"width": 4}).eval()
    spec = {"resolution": [28, 28], "channels": 1, "range": [0.0, 1.0]}
    calib = torch.from_numpy(preprocess_float(_digits(64), spec).transpose(0, 3, 1, 2).copy())
    float_onnx = oa.export_onnx(net, "image", d / "float.onnx")
    int8_onnx = oa.quantize_onnx(float_onnx, d / "int8.onnx", calib.numpy(), "QDQ", True)
    example = calib[:1]
    torch.export.save(torch.export.export(net, (example,)), d / "float.pt2")
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = pt2e.prepare_pt2e(torch.export.export(net, (example,)).module(), quantizer)
    with torch.no_grad():
        for i in range(len(calib)):
            prepared(calib[i:i + 1])
    torch.export.save(torch.export.export(pt2e.convert_pt2e(prepared), (example,)), d / "int8.pt2")
    return {"float.onnx": float_onnx, "int8.onnx": int8_onnx, "float.pt2": d / "float.pt2",
            "int8.pt2": d / "int8.pt2"}


@pytest.mark.parametrize("name", ["int8.onnx", "int8.pt2"])
def test_every_verb_takes_the_file(files, tmp_path, capsys, name):
    from PIL import Image

    path = str(files[name])
    quantized = cli(capsys, ["quantize", path, "--out", str(tmp_path / "q")])["model"]
    graph = load_graph(quantized)
    info = cli(capsys, ["inspect", path])
    assert info["totals"] == cli(capsys, ["inspect", quantized])["totals"] and info["totals"]["layers"] == 5
    from microtrain.api.models import load_model

    same = load_model(path)  # what every verb loads: the model quantize writes, tensor for tensor
    assert [n.op for n in same.nodes] == [n.op for n in graph.nodes]
    for t in graph.tensors.values():
        assert same.tensors[t.name].quant == t.quant and (not t.is_const or np.array_equal(same.tensors[t.name].data,
                                                                                           t.data)), t.name
    ev = cli(capsys, ["eval", path, *DATA, "--limit", "60"])
    assert ev["accuracy"] == cli(capsys, ["eval", quantized, *DATA, "--limit", "60"])["accuracy"]
    Image.fromarray(_digits(1)[0]).save(tmp_path / "digit.png")
    image = str(tmp_path / "digit.png")
    pred = cli(capsys, ["predict", path, image, "--top", "3"])["predictions"]
    assert pred == cli(capsys, ["predict", quantized, image, "--top", "3"])["predictions"] and len(pred) == 1
    # finetune from the file, the trained model exported
    ft = ["--scheme", "last-k:2", "--epochs", "1", "--limit", "40", "--test-limit", "20", "--batch-size", "4"]
    cli(capsys, ["finetune", path, *DATA, *ft, "--out", str(tmp_path / "ft"), "--export", str(tmp_path / "trained")])
    trained = load_graph(tmp_path / "trained.json")
    assert any(not np.array_equal(trained.tensors[t].data, graph.tensors[t].data) for t in graph.tensors
               if graph.tensors[t].is_const)
    # compile and train on the host
    cli(capsys, ["compile", path, "--scheme", "last-k:2", "--out", str(tmp_path / "proj")])
    run = cli(capsys, ["run", str(tmp_path / "proj"), "--target", "host", *DATA, "--steps", "8", "--eval", "10",
                       "--workdir", str(tmp_path / "work")])
    assert len(run["loss_bits"]) == 8 and np.all(np.isfinite(run["losses"]))


def test_plan_takes_the_onnx_file(files, tmp_path, capsys):
    plan = ["--classes", "10", "--budget", "64KB", "--limit", "40", "--val-limit", "20", "--epochs", "1",
            "--candidates", "2", "--evaluations", "4", "--lr", "0.01", "--workers", "1"]
    doc = cli(capsys, ["plan", str(files["int8.onnx"]), *DATA, *plan, "--out", str(tmp_path / "s.json")])
    assert 0 < doc["peak_bytes"] <= 64 * 1024 and (tmp_path / "s.json").exists()


@pytest.mark.parametrize("verb", [["inspect"], ["eval", *DATA], ["compile", "--scheme", "last-k:1", "--out", "X"],
                                  ["finetune", *DATA, "--out", "X"], ["plan", *DATA, "--budget", "64KB", "--out", "X"]])
def test_refusals_are_one_line_in_every_verb(files, tmp_path, capsys, verb):
    def run(path) -> str:
        argv = [verb[0], str(path), *[str(tmp_path / "x") if v == "X" else v for v in verb[1:]]]
        return cli_error(capsys, argv)

    for name in ("float.onnx", "float.pt2"):
        line = run(files[name])
        assert f"{files[name]} is a float model" in line and "microtrain quantize" in line, line
    assert "no such file" in run(tmp_path / "missing.onnx")

    class WithSigmoid(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.sigmoid(self.conv(x)).mean((2, 3)))

    sigmoid = tmp_path / "sigmoid.onnx"
    torch.onnx.export(WithSigmoid().eval(), (torch.zeros(1, 1, 8, 8),), str(sigmoid), dynamo=False, opset_version=17)
    line = run(sigmoid)
    assert "unsupported ONNX op Sigmoid (ai.onnx) at node '/Sigmoid'" in line, line
    assert line.split("error: ")[-1].endswith(cli_error(capsys, ["quantize", str(sigmoid), "--calib-data", "digits",
                                                                 "--out", str(tmp_path / "s")]).split("error: ")[-1])
