"""The PyTorch MCU nets match the zoo files layer for layer and are fx-traceable."""

from __future__ import annotations

import pytest
import torch
from conftest import zoo_path_or_skip
from torch import nn

from microtrain.frontend.mcu_zoo import import_zoo_model
from microtrain.ir import Op
from microtrain.zoo.mcu_nets import MCU_NET_BLOCKS, build_mcu_net


def torch_layer_signature(model: nn.Module) -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, groups, in, out) of every Conv2d and Linear in execution (= definition) order."""
    sig = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.kernel_size[0] == m.kernel_size[1] and m.padding == (m.kernel_size[0] // 2,) * 2
            sig.append((m.kernel_size[0], m.stride[0], m.groups, m.in_channels, m.out_channels))
        elif isinstance(m, nn.Linear):
            sig.append((1, 1, 1, m.in_features, m.out_features))
    return sig


def graph_layer_signature(graph) -> list[tuple[int, int, int, int, int]]:
    sig = []
    for n in graph.weighted_nodes():
        x, w = graph.tensors[n.inputs[0]], graph.tensors[n.inputs[1]]
        if n.op == Op.CONV2D:
            sig.append((w.shape[1], n.attrs["stride"][0], n.attrs["groups"], x.shape[3], w.shape[0]))
        else:
            sig.append((1, 1, 1, x.shape[1], w.shape[0]))
    return sig


@pytest.mark.zoo
@pytest.mark.parametrize("name", sorted(MCU_NET_BLOCKS))
def test_layers_match_zoo_file(name: str) -> None:
    graph = import_zoo_model(zoo_path_or_skip(name))
    model = build_mcu_net(name)
    assert torch_layer_signature(model) == graph_layer_signature(graph)
    # Same residual blocks, and the module names are the graph's node names.
    torch_res = [i for i, b in enumerate(model.blocks) if b.residual]
    graph_res = [int(n.name.split(".")[1]) for n in graph.nodes if n.op == Op.ADD]
    assert torch_res == graph_res
    conv_names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert [n.removesuffix(".conv") for n in conv_names] == [n.name for n in graph.weighted_nodes()]


@pytest.mark.parametrize("name", sorted(MCU_NET_BLOCKS))
def test_forward_and_fx_trace(name: str) -> None:
    torch.manual_seed(0)
    model = build_mcu_net(name).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        y = model(x)
        traced = torch.fx.symbolic_trace(model)
        small = torch.randn(1, 3, 32, 32)  # the trace is resolution-independent; keep the test cheap
        assert torch.equal(traced(small), model(small))
        assert build_mcu_net(name, num_classes=10).eval()(small).shape == (1, 10)
    assert y.shape == (1, 1000) and torch.isfinite(y).all()
    ops = {n.target for n in traced.graph.nodes if n.op == "call_function"}
    assert ops <= {__import__("operator").add}, ops  # only the residual adds are functions


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown MCU net"):
        build_mcu_net("resnet50")
