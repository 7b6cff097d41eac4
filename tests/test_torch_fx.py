"""torch.fx importer: every supported construct, BN folding, PTQ accuracy, error messages.

Accuracy criterion: the reference interpreter's dequantized int8 output vs the float torch
output on the calibration inputs. With per-tensor int8 activations each layer adds about
half an LSB of rounding at its input and output plus the weight rounding (<= 1/254 of the
largest weight of each channel); for these 1-3 layer modules the error stays within
``TOL_LSB`` output LSBs (s_y), which is what the tests assert.
"""

from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from microtrain.frontend.torch_fx import UnsupportedError, import_torch_module, lower_to_plan, run_float_plan, trace
from microtrain.interp.reference import run_graph
from microtrain.ir.ops import Op
from microtrain.quant import dequantize, quantize

TOL_LSB = 4.0


def _randomize_bn(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return module.eval()


def _int8_vs_float(module: nn.Module, shape=(1, 3, 8, 8), n: int = 6, seed: int = 0):
    """(graph, int8 outputs dequantized, float outputs, output scale) on n calibration inputs."""
    torch.manual_seed(seed)
    module = _randomize_bn(module, seed)
    x = torch.rand((16,) + tuple(shape[1:]))
    graph = import_torch_module(module, shape, x)
    with torch.no_grad():
        ref = module(x[:n]).double().numpy()
    in_q, out_q = graph.tensors[graph.inputs[0]].quant, graph.tensors[graph.outputs[0]].quant
    outs = []
    for i in range(n):
        xq = quantize(x[i:i + 1].numpy().transpose(0, 2, 3, 1), in_q.s, in_q.z)
        y = run_graph(graph, {graph.inputs[0]: xq})[graph.outputs[0]]
        outs.append(dequantize(y, out_q.s, out_q.z))
    return graph, np.concatenate(outs), ref, out_q.s


def _assert_close(module, shape=(1, 3, 8, 8), tol=TOL_LSB):
    graph, got, ref, s = _int8_vs_float(module, shape)
    err = np.abs(got - ref.reshape(got.shape)).max()
    assert err <= tol * s, f"max error {err / s:.2f} LSB > {tol}"
    return graph


class Head(nn.Module):
    """Global pooling + linear, so every test module returns [N, K] logits."""

    def __init__(self, c: int, k: int = 5, how: str = "module"):
        super().__init__()
        self.how = how
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, k)

    def forward(self, x):
        if self.how == "module":
            return self.fc(self.flatten(self.pool(x)))
        if self.how == "mean":
            return self.fc(x.mean((2, 3)))
        if self.how == "torch.mean":
            return self.fc(torch.flatten(torch.mean(x, dim=[-1, -2], keepdim=True), 1))
        return self.fc(F.adaptive_avg_pool2d(x, 1).view(x.size(0), -1))


class ConvBNAct(nn.Module):
    def __init__(self, act: str, groups: int = 1, cin: int = 3, cout: int = 6, stride: int = 1, head: str = "module"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=act == "clamp")
        self.bn = nn.BatchNorm2d(cout)
        self.act = act
        self.relu = nn.ReLU() if act == "nn.ReLU" else nn.ReLU6()
        self.head = Head(cout, how=head)

    def forward(self, x):
        y = self.bn(self.conv(x))
        y = {"nn.ReLU": lambda t: self.relu(t), "nn.ReLU6": lambda t: self.relu(t), "F.relu": F.relu,
             "F.relu6": F.relu6, "clamp": lambda t: torch.clamp(t, 0.0, 6.0), "method": lambda t: t.relu()}[self.act](y)
        return self.head(y)


@pytest.mark.parametrize("act", ["nn.ReLU", "nn.ReLU6", "F.relu", "F.relu6", "clamp", "method"])
def test_conv_bn_activation_forms(act):
    graph = _assert_close(ConvBNAct(act))
    conv = graph.node("conv")
    assert conv.op is Op.CONV2D and conv.attrs["act_min"] == graph.tensors["conv.out"].quant.z == -128
    assert [n.op for n in graph.nodes] == [Op.CONV2D, Op.GLOBAL_AVG_POOL, Op.RESHAPE, Op.FULLY_CONNECTED]


@pytest.mark.parametrize("groups, cin, cout", [(6, 6, 6), (2, 4, 6), (3, 3, 6)])
def test_depthwise_and_grouped_conv(groups, cin, cout):
    graph = _assert_close(ConvBNAct("F.relu6", groups=groups, cin=cin, cout=cout, stride=2), shape=(1, cin, 9, 9))
    w = graph.tensors["conv.weight"]
    assert graph.node("conv").attrs["groups"] == groups and w.shape == (cout, 3, 3, cin // groups)
    assert graph.node("conv").attrs["stride"] == (2, 2) and graph.tensors["conv.out"].shape == (1, 5, 5, cout)


@pytest.mark.parametrize("how", ["module", "mean", "torch.mean", "functional_view"])
def test_pooling_and_flatten_forms(how):
    graph = _assert_close(ConvBNAct("nn.ReLU", head=how))
    assert Op.GLOBAL_AVG_POOL in [n.op for n in graph.nodes] and graph.tensors[graph.outputs[0]].shape == (1, 5)


class Residual(nn.Module):
    def __init__(self, form: str):
        super().__init__()
        self.form = form
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding="same"))
        self.head = Head(8)

    def forward(self, x):
        x = self.stem(x)
        y = self.body(x)
        y = {"+": lambda: x + y, "torch.add": lambda: torch.add(x, y), "operator.add": lambda: operator.add(y, x),
             "method": lambda: x.add(y)}[self.form]()
        return self.head(F.relu(y))


@pytest.mark.parametrize("form", ["+", "torch.add", "operator.add", "method"])
def test_residual_add_with_folded_relu(form):
    graph = _assert_close(Residual(form))
    add = next(n for n in graph.nodes if n.op is Op.ADD)
    assert add.attrs["act_min"] == graph.tensors[add.outputs[0]].quant.z  # ReLU folded into the add


class SpatialFlatten(nn.Module):
    """Flatten of a 3x4x4 map into a Linear: the IR flattens NHWC, so columns are permuted."""

    def __init__(self, form: str):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(48, 4)
        self.form = form

    def forward(self, x):
        y = F.relu(self.conv(x))
        y = torch.flatten(y, 1) if self.form == "flatten" else y.reshape(-1, 48)
        return self.fc(F.dropout(self.drop(y), 0.2, training=self.training))


@pytest.mark.parametrize("form", ["flatten", "reshape"])
def test_flatten_of_spatial_map_and_dropout(form):
    graph = _assert_close(SpatialFlatten(form), shape=(1, 2, 8, 8))
    assert [n.op for n in graph.nodes] == [Op.CONV2D, Op.RESHAPE, Op.FULLY_CONNECTED]


def test_bn_folding_is_exact_in_float():
    module = _randomize_bn(Residual("+"), seed=3)
    x = torch.randn(4, 3, 8, 8)
    plan = lower_to_plan(trace(module, (1, 3, 8, 8)))
    assert [op.kind for op in plan.ops] == ["conv", "conv", "conv", "add", "pool", "reshape", "linear"]
    with torch.no_grad():
        np.testing.assert_allclose(run_float_plan(plan, x).numpy(), module(x).double().numpy(), rtol=1e-5, atol=1e-5)


def test_percentile_calibration_narrows_ranges():
    module = _randomize_bn(ConvBNAct("nn.ReLU"))
    x = torch.rand(32, 3, 8, 8)
    wide = import_torch_module(module, (1, 3, 8, 8), x)
    narrow = import_torch_module(module, (1, 3, 8, 8), x, method="percentile", percentile=99.0)
    assert narrow.tensors["conv.out"].quant.s < wide.tensors["conv.out"].quant.s
    assert narrow.meta["calibration"] == {"method": "percentile", "samples": 32, "percentile": 99.0}


def test_weights_and_bias_quantization_follow_the_contract():
    module = _randomize_bn(ConvBNAct("F.relu6"))
    graph = import_torch_module(module, (1, 3, 8, 8), torch.rand(8, 3, 8, 8))
    w, b, x = graph.tensors["conv.weight"], graph.tensors["conv.bias"], graph.tensors["input"]
    assert w.dtype == "int8" and w.quant.axis == 0 and np.abs(w.data).max(axis=(1, 2, 3)).tolist() == [127] * 6
    assert b.dtype == "int32"
    # The folded real bias, recovered from the int32 bias, matches BN's folded shift.
    k = module.bn.weight / torch.sqrt(module.bn.running_var + module.bn.eps)
    real_b = (module.bn.bias - k * module.bn.running_mean).detach().numpy()
    np.testing.assert_allclose(b.data * x.quant.s * w.quant.scales(), real_b, atol=x.quant.s * max(w.quant.scale))
    conv = graph.node("conv")
    y = graph.tensors["conv.out"].quant
    assert conv.attrs["act_max"] == min(127, y.z + round(6.0 / y.s))


def test_zoo_style_names_for_wrapped_convs():
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.first_conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU6())
            self.blocks = nn.Sequential(nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)))
            self.classifier = nn.Linear(4, 2)

        def forward(self, x):
            return self.classifier(self.blocks(self.first_conv(x)).mean((2, 3)))

    graph = import_torch_module(Wrapped().eval(), (1, 3, 4, 4), torch.rand(2, 3, 4, 4))
    assert [n.name for n in graph.weighted_nodes()] == ["first_conv", "blocks.0.0", "blocks.0.1", "classifier"]


# --- errors -------------------------------------------------------------------------------

class WithPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.MaxPool2d(2, ceil_mode=True))
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.sigmoid(self.conv(x)).mean((2, 3)))


class WithPermute(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x.permute(0, 2, 3, 1).mean((1, 2)))


class BnWithoutConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.bn(x).mean((2, 3)))


class SharedBeforeRelu(nn.Module):
    """conv -> dropout -> relu while the conv output is also used raw: the ReLU cannot fold."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.drop = nn.Dropout()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        y = self.conv(x)
        return self.fc((F.relu(self.drop(y)) + y).mean((2, 3)))


@pytest.mark.parametrize("module, pattern", [
    (SharedBeforeRelu(), r"function F\.relu at fx node 'relu' cannot be folded \(its input is used elsewhere"),
    (WithPool(), r"module nn\.MaxPool2d at 'features\.3': ceil_mode=True is not supported"),
    (WithSigmoid(), r"unsupported function torch\.sigmoid at fx node 'sigmoid'"),
    (WithPermute(), r"unsupported method Tensor\.permute at fx node 'permute'"),
    (BnWithoutConv(), r"module nn\.BatchNorm2d at 'bn' cannot be folded"),
    (nn.Sequential(nn.Conv2d(3, 4, 3, dilation=2), nn.Flatten()), r"nn\.Conv2d at '0': only dilation 1"),
    (nn.Sequential(nn.Conv2d(3, 4, 3)), r"must return \[N, classes\] logits, returns \[1, 4, 4, 4\]"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Unflatten(1, (2, 2))), r"unsupported module nn\.Unflatten at '1'"),
])
def test_unsupported_constructs_are_named(module, pattern):
    with pytest.raises(UnsupportedError, match=pattern):
        import_torch_module(module.eval(), (1, 3, 6, 6), torch.rand(2, 3, 6, 6))


def test_bad_calibration_data_is_refused():
    with pytest.raises(ValueError, match=r"calibration data must be float \[N, 3, 8, 8\]"):
        import_torch_module(ConvBNAct("F.relu").eval(), (1, 3, 8, 8), torch.rand(2, 1, 8, 8))
