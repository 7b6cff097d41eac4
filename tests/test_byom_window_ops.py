"""torch's pooling, padding and concatenation on the IR ops the TFLite importer added
(MAX_POOL2D, AVG_POOL2D, PAD, CONCAT: TFLite Micro's int8 kernels, one op registry): a user's
network with two concatenated branches, max/average pooling and zero padding goes from a .py
(torch.fx) and a .pt2 (torch.export) to the same int8 model, predicts what the float network
predicts, and trains through those ops on QEMU as on the host, the reference interpreter and
the simulator. What they cannot express is a one-line error."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from byom_support import BRANCH, cli, cli_error, fashion, model_input, train_float, user_net
from test_byom_cli import _same_graph, _user_file

from microtrain.ir import load_graph
from microtrain.ir.ops import Op

WINDOW_OPS = {Op.MAX_POOL2D, Op.AVG_POOL2D, Op.PAD, Op.CONCAT}


@pytest.fixture(scope="module")
def branch(tmp_path_factory):
    d = tmp_path_factory.mktemp("branch")
    net = train_float(user_net(BRANCH), "image", samples=2000, epochs=1)
    torch.save(net.state_dict(), d / "branch.pt")
    torch.export.save(torch.export.export(net, (torch.zeros(1, 1, 28, 28),)), d / "branch.pt2")
    return d, net


def _quantize(capsys, model, out, *extra):
    return cli(capsys, ["quantize", str(model), *extra, "--calib-data", "fashion-mnist", "--calib-samples", "200",
                        "--out", str(out)])


def test_pool_pad_cat_from_py_and_pt2(branch, capsys):
    d, net = branch
    doc = _quantize(capsys, d / "branch.pt", d / "py", "--arch", BRANCH)
    graph = load_graph(doc["model"])
    ops = [n.op for n in graph.nodes]
    assert WINDOW_OPS <= set(ops) and ops.count(Op.PAD) == 3 and ops.count(Op.MAX_POOL2D) == 2
    cat = next(n for n in graph.nodes if n.op is Op.CONCAT)
    assert cat.attrs["axis"] == 3 and len({graph.tensors[t].quant for t in (*cat.inputs, *cat.outputs)}) == 1
    pad = next(n for n in graph.nodes if n.op is Op.PAD)
    assert pad.attrs["pad_value"] == graph.tensors[pad.inputs[0]].quant.z  # real 0
    # AvgPool2d(padding=1) averages real zeros at the border: a PAD with the zero point first
    avg = next(n for n in graph.nodes if n.op is Op.AVG_POOL2D)
    assert tuple(avg.attrs["padding"]) == (0, 0, 0, 0) and graph.node(avg.name + ".pad").op is Op.PAD
    doc2 = _quantize(capsys, d / "branch.pt2", d / "pt2")
    assert doc2["source"] == "torch.export"
    _same_graph(graph, load_graph(doc2["model"]))
    # the int8 model predicts what the float network predicts (its oracle), image by image
    from microtrain.data.preprocess import preprocess
    from microtrain.interp.batched import infer_batch

    test = fashion("test", 500)
    ours = infer_batch(graph, preprocess(test.images, graph)).reshape(len(test.images), -1).argmax(1)
    with torch.no_grad():
        theirs = net(model_input(test.images, "image")).argmax(1).numpy()
    assert np.mean(ours == theirs) >= 0.93, np.mean(ours == theirs)  # measured 96.7 % (300 images)
    ev = cli(capsys, ["eval", doc["model"], "--data", "fashion-mnist", "--limit", "500", "--engine", "batched"])
    assert ev["accuracy"] == np.mean(ours == test.labels) and ev["accuracy"] > 0.15  # trained: above chance


@pytest.mark.target
@pytest.mark.host_c
@pytest.mark.slow
def test_training_through_pool_pad_cat_on_qemu(branch, tmp_path, capsys):
    """last-k:4 trains fc, head, branch3 and branch1: the gradient goes back through the max
    pool, the pad, the average pool and the concatenation."""
    from conftest import require_tool
    from test_byom_device import _device_chain

    for tool, pkg in (("gcc", "gcc"), ("arm-none-eabi-gcc", "gcc-arm-none-eabi"), ("qemu-system-arm",
                                                                                   "qemu-system-arm")):
        require_tool(tool, pkg)
    d, _ = branch
    doc = _quantize(capsys, d / "branch.pt", tmp_path / "m", "--arch", BRANCH)
    _device_chain(capsys, tmp_path, doc["model"], plan=False, scheme="last-k:4")


UNSUPPORTED = {
    "ceil_mode": ("self.pool = nn.MaxPool2d(2, ceil_mode=True)", "y = self.pool(self.conv(x))",
                  r"module nn\.MaxPool2d at 'pool': ceil_mode=True is not supported"),
    "pad_value": ("self.pool = nn.Identity()", "y = F.pad(self.conv(x), (1, 1, 1, 1), value=0.5)",
                  r"function F\.pad at fx node 'pad': only zero padding is supported.*value=0\.5"),
    "reflect": ("self.pool = nn.ReflectionPad2d(1)", "y = self.pool(self.conv(x))",
                r"unsupported module nn\.ReflectionPad2d at 'pool'"),
    "divisor": ("self.pool = nn.AvgPool2d(2, divisor_override=3)", "y = self.pool(self.conv(x))",
                r"module nn\.AvgPool2d at 'pool': divisor_override is not supported"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_window_forms_are_one_line_errors(tmp_path, capsys, case):
    init, body, pattern = UNSUPPORTED[case]
    arch = _user_file(tmp_path, f"""
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3)
                {init}
                self.fc = nn.Linear(4, 10)
            def forward(self, x):
                {body}
                return self.fc(y.mean((2, 3)))
        """) + ":Net"
    torch.save(user_net(arch).state_dict(), tmp_path / "w.pt")
    line = cli_error(capsys, ["quantize", str(tmp_path / "w.pt"), "--arch", arch, "--input-shape", "1,1,8,8",
                              "--calib-data", "digits", "--out", str(tmp_path / "o")])
    assert re.search(pattern, line), line
