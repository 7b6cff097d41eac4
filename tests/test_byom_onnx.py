"""ONNX models made by onnxruntime's quantize_static from the user networks (QDQ and
QOperator, per channel and per tensor; the two-branch network with MaxPool, AveragePool, Pad
and Concat in QDQ): imported with their own scales and zero points, they agree with
onnxruntime on 1,000 Fashion-MNIST test images, then compile and train on QEMU. Float ONNX
goes through PTQ; an unsupported op or a dynamic shape is a one-line error.

Agreement criterion (benchmarks/onnx_agreement.py explains and measures it): every int8 output
code within 1 LSB of onnxruntime's (float32 vs fixed-point requantization), and the top-1 class
the same on every image except where one of the two has a tie between its two largest codes
(argmax then depends on a 1-LSB difference). The two-branch network: within 2 LSB, because two
more roundings differ (its average pool: half to even in onnxruntime, half away from zero in
TFLite Micro's kernel; its concatenation: onnxruntime rounds each input to its own grid, then to
the concatenation's, microtrain computes each input on the concatenation's grid), and the same
top-1 on every image without such a tie."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from byom_support import BRANCH, KWS, RESIDUAL, cli, cli_error, fashion, model_input, train_float, user_net
from conftest import require_tool

from microtrain.frontend.user_model import load_arch

pytest.importorskip("onnxruntime", reason="onnxruntime (the [dev] extra) is the ONNX oracle")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import onnx_agreement as oa  # noqa: E402

VARIANTS = {"residual_qdq_per_channel": ("residual", "QDQ", True), "residual_qoperator_per_tensor":
            ("residual", "QOperator", False), "kws_qdq_per_tensor": ("kws", "QDQ", False),
            "kws_qoperator_per_channel": ("kws", "QOperator", True), "branch_qdq_per_channel": ("branch", "QDQ", True)}
KIND = {"residual": "image", "kws": "signal", "branch": "image"}
MAX_LSB = {"branch": 2}  # else 1 (module doc)


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    calib = fashion("train", 200, seed=1).images
    floats = {}
    for net, arch in (("residual", RESIDUAL), ("kws", KWS), ("branch", BRANCH)):
        floats[net] = oa.export_onnx(train_float(user_net(arch), KIND[net], samples=2000, epochs=2), KIND[net],
                                     d / f"{net}.onnx")
    models = {name: oa.quantize_onnx(floats[net], d / f"{name}.onnx", model_input(calib, KIND[net]).numpy(), fmt, pc)
              for name, (net, fmt, pc) in VARIANTS.items()}
    return d, floats, models


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_int8_onnx_agrees_with_onnxruntime_on_1000_images(onnx_models, name):
    _, _, models = onnx_models
    kind = KIND[VARIANTS[name][0]]
    test = fashion("test", 1000, seed=0)
    r = oa.compare(models[name], test.images, test.labels, lambda im: model_input(im, kind))
    assert r["source"] == ("onnx-qdq" if "qdq" in name else "onnx-qoperator")
    assert r["max_lsb"] <= MAX_LSB.get(VARIANTS[name][0], 1), r
    assert r["top1_disagreements_without_tie"] == 0, r
    assert r["top1_same"] >= 0.98 * r["images"] and abs(r["acc_microtrain"] - r["acc_onnxruntime"]) < 0.01, r


def test_float_onnx_goes_through_ptq(onnx_models, tmp_path, capsys):
    _, floats, _ = onnx_models
    doc = cli(capsys, ["quantize", str(floats["kws"]), "--calib-data", "fashion-mnist", "--calib-samples", "200",
                       "--out", str(tmp_path / "kws")])
    assert doc["source"] == "onnx" and doc["calibration"]["samples"] == 200
    ev = cli(capsys, ["eval", doc["model"], "--data", "fashion-mnist", "--limit", "300", "--engine", "batched"])
    import onnxruntime as ort

    test = fashion("test", 300, seed=0)
    sess = ort.InferenceSession(str(floats["kws"]), providers=["CPUExecutionProvider"])
    ref = np.mean(sess.run(None, {"input": model_input(test.images, "signal").numpy()})[0].argmax(1) == test.labels)
    assert abs(ev["accuracy"] - ref) < 0.03, (ev["accuracy"], ref)


@pytest.mark.target
@pytest.mark.host_c
@pytest.mark.parametrize("name", ["residual_qdq_per_channel", "kws_qoperator_per_channel", "branch_qdq_per_channel"])
def test_int8_onnx_compiles_and_trains_on_qemu(onnx_models, tmp_path, capsys, name):
    for tool, pkg in (("gcc", "gcc"), ("arm-none-eabi-gcc", "gcc-arm-none-eabi"), ("qemu-system-arm",
                                                                                   "qemu-system-arm")):
        require_tool(tool, pkg)
    _, _, models = onnx_models
    doc = cli(capsys, ["quantize", str(models[name]), "--out", str(tmp_path / "m")])
    proj = tmp_path / "proj"
    cli(capsys, ["compile", doc["model"], "--scheme", "last-k:2", "--target", "cortex-m7", "--out", str(proj)])
    args = ["--data", "fashion-mnist", "--steps", "20", "--eval", "20", "--lr", "0.01"]
    q = cli(capsys, ["run", str(proj), "--target", "qemu", *args, "--workdir", str(tmp_path / "q")])
    h = cli(capsys, ["run", str(proj), "--target", "host", *args, "--workdir", str(tmp_path / "h")])
    assert q["loss_bits"] == h["loss_bits"] and len(q["loss_bits"]) == 20 and np.all(np.isfinite(q["losses"]))
    assert (tmp_path / "q" / "mt_weights.bin").read_bytes() == (tmp_path / "h" / "mt_weights.bin").read_bytes()
    assert (tmp_path / "q" / "mt_weights.bin").read_bytes() != b"" and q["memory"]["sram_bytes"] <= 256 * 1024


def test_float_onnx_with_pool_pad_concat(onnx_models, tmp_path, capsys):
    """The two-branch network's float ONNX (MaxPool, AveragePool with count_include_pad, Pad,
    Concat) through PTQ: the IR's window ops, predicting what onnxruntime's float model predicts."""
    from microtrain.data.preprocess import preprocess
    from microtrain.interp.batched import infer_batch
    from microtrain.ir import load_graph
    from microtrain.ir.ops import Op

    _, floats, _ = onnx_models
    doc = cli(capsys, ["quantize", str(floats["branch"]), "--calib-data", "fashion-mnist", "--calib-samples", "200",
                       "--out", str(tmp_path / "branch")])
    graph = load_graph(doc["model"])
    ops = [n.op for n in graph.nodes]
    assert ops.count(Op.MAX_POOL2D) == 2 and ops.count(Op.CONCAT) == 1 and Op.AVG_POOL2D in ops
    assert ops.count(Op.PAD) == 2  # the explicit Pad and the one putting real zeros under count_include_pad
    import onnxruntime as ort

    test = fashion("test", 300, seed=0)
    sess = ort.InferenceSession(str(floats["branch"]), providers=["CPUExecutionProvider"])
    theirs = sess.run(None, {"input": model_input(test.images, "image").numpy()})[0].argmax(1)
    ours = infer_batch(graph, preprocess(test.images, graph)).reshape(len(test.images), -1).argmax(1)
    assert np.mean(ours == theirs) >= 0.93, np.mean(ours == theirs)


def test_qoperator_average_pool_that_requantizes_is_a_one_line_error(onnx_models, tmp_path, capsys):
    _, floats, _ = onnx_models
    calib = model_input(fashion("train", 50, seed=1).images, "image").numpy()
    path = oa.quantize_onnx(floats["branch"], tmp_path / "branch_qop.onnx", calib, "QOperator", True)
    line = cli_error(capsys, ["quantize", str(path), "--out", str(tmp_path / "o")])
    assert "(QLinearAveragePool): the output is quantized" in line and "keeps its input's scale" in line, line


def _export(module, path, example, **kw):
    torch.onnx.export(module.eval(), (example,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                      output_names=["logits"], **kw)
    return path


def test_unsupported_onnx_op_and_dynamic_shapes_are_one_line_errors(tmp_path, capsys):
    class WithSigmoid(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.sigmoid(self.conv(x)).mean((2, 3)))

    q = ["--calib-data", "digits", "--out", str(tmp_path / "o")]
    path = _export(WithSigmoid(), tmp_path / "sigmoid.onnx", torch.zeros(1, 1, 8, 8))
    line = cli_error(capsys, ["quantize", str(path), *q])
    assert "unsupported ONNX op Sigmoid (ai.onnx) at node '/Sigmoid'" in line, line
    path = _export(load_arch(RESIDUAL), tmp_path / "dynamic.onnx", torch.zeros(1, 1, 28, 28),
                   dynamic_axes={"input": {0: "N", 2: "height", 3: "width"}})
    line = cli_error(capsys, ["quantize", str(path), *q])
    assert "ONNX input 'input' has a dynamic dimension 2 ('height')" in line and "fixed input shape" in line, line
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    assert "not a readable ONNX model" in cli_error(capsys, ["quantize", str(tmp_path / "junk.onnx"), *q])
