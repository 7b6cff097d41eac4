"""A PT2E-quantized model (torchao's prepare_pt2e / convert_pt2e, after PTQ and after QAT) imported
from its .pt2 with its own scales and zero points, and microtrain's int8 outputs compared with
the quantized PyTorch model's.

The stated bound: at most 3 LSB on any output code, at least 85 % of output codes identical.
Why they differ: (1) the PT2E model computes each conv/linear in float on dequantized int8
values with a float bias, then rounds to the output grid (half to even); microtrain
accumulates in int32 with the bias rounded to int32 (units s_x*s_w) and requantizes in fixed
point (31-bit multiplier, rounding shift): the integers agree except near a rounding tie.
(2) Where the quantizer puts a quantize/dequantize pair between a conv and its activation
(torchao's XNNPACK quantizer does for ReLU6/Hardtanh), PT2E rounds twice (conv output grid,
then activation output grid) and microtrain, whose conv has the activation as its clamp,
rounds once, to the activation's grid. Each is at most one code per layer; later layers can
carry a difference forward: measured up to 2-3 LSB at the logits of these 5-layer networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from byom_support import KWS, RESIDUAL, cli, cli_error, fashion, model_input, train_float, user_net

from microtrain.frontend.user_model import load_arch
from microtrain.interp.batched import infer_batch
from microtrain.ir import load_graph

pt2e = pytest.importorskip("torchao.quantization.pt2e.quantize_pt2e", reason="torchao (the [dev] extra) makes the "
                                                                              "PT2E fixtures")


def _xnnpack():
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))


def _ptq(module, kind, quantizer, calib: int = 64):
    example = model_input(fashion("train", 1, seed=5).images, kind)
    prepared = pt2e.prepare_pt2e(torch.export.export(module.eval(), (example,)).module(), quantizer)
    x = model_input(fashion("train", calib, seed=2).images, kind)
    with torch.no_grad():
        for i in range(len(x)):
            prepared(x[i:i + 1])
    return pt2e.convert_pt2e(prepared), example


def _qat(module, kind, steps: int = 60):
    """Quantization-aware training: prepare_qat_pt2e, a few SGD steps with fake quantization, convert."""
    example = model_input(fashion("train", 1, seed=5).images, kind)
    prepared = pt2e.prepare_qat_pt2e(torch.export.export(module.train(), (example,)).module(), _xnnpack())
    ds = fashion("train", steps, seed=3)
    x, y = model_input(ds.images, kind), torch.from_numpy(ds.labels)
    opt = torch.optim.SGD(prepared.parameters(), lr=0.01)
    for i in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(prepared(x[i:i + 1]), y[i:i + 1]).backward()
        opt.step()
    import torchao.quantization.pt2e as ao_pt2e

    ao_pt2e.move_exported_model_to_eval(prepared)
    converted = pt2e.convert_pt2e(prepared)
    ao_pt2e.move_exported_model_to_eval(converted)  # batch norm in eval mode in the exported program
    return converted, example


def _agreement(tmp_path, capsys, converted, example, kind, reference=None, bound=(3, 0.85)):
    """microtrain's int8 outputs vs ``reference`` (default: the converted model itself) on 300
    test images: max LSB difference and share of identical codes within ``bound``; returns
    (graph, measured max LSB, share identical, share of the same top-1)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(converted, (example,)), path)
    doc = cli(capsys, ["quantize", str(path), "--out", str(tmp_path / "m")])  # no --calib-data: its own scales
    assert doc["source"] == "pt2e" and doc["calibration"] == {"method": "from the model"}
    graph = load_graph(doc["model"])
    test = fashion("test", 300, seed=0)
    from microtrain.data.preprocess import preprocess

    ours = infer_batch(graph, preprocess(test.images, graph)).reshape(len(test.images), -1).astype(np.int64)
    q = graph.tensors[graph.outputs[0]].quant
    model = reference if reference is not None else converted
    with torch.no_grad():
        ref = torch.cat([model(model_input(test.images[i:i + 1], kind)) for i in range(len(test.images))])
    theirs = np.rint(ref.numpy() / q.s).astype(np.int64) + q.z  # the output is dequantize(int8 codes)
    diff = np.abs(ours - theirs)
    same, top1 = float(np.mean(diff == 0)), float(np.mean(ours.argmax(1) == theirs.argmax(1)))
    assert diff.max() <= bound[0] and same >= bound[1], (diff.max(), same, top1)
    return graph, int(diff.max()), same, top1


def _without_conv_output_requantization(converted):
    """A copy of a QAT-converted model without the quantize/dequantize PT2E leaves on a conv's
    output before the unfolded batch norm (conv(x, w*k) -> q -> dq -> / k -> + b -> batch_norm):
    the model microtrain's folded conv computes (one requantization, at the activation)."""
    import copy

    m = copy.deepcopy(converted)
    convs = {torch.ops.aten.conv1d.default, torch.ops.aten.conv2d.default}
    for n in list(m.graph.nodes):
        src = n.args[0] if n.args else None
        if (n.target is torch.ops.quantized_decomposed.dequantize_per_tensor.default and
                isinstance(src, torch.fx.Node) and isinstance(src.args[0], torch.fx.Node) and
                src.args[0].target in convs and any(u.target is torch.ops.aten.div.Tensor for u in n.users)):
            n.replace_all_uses_with(src.args[0])
    m.graph.eliminate_dead_code()
    m.recompile()
    return m


def test_pt2e_ptq_residual_keeps_its_quantization(tmp_path, capsys):
    module = train_float(user_net(RESIDUAL), "image", samples=1000, epochs=1)
    converted, example = _ptq(module, "image", _xnnpack())
    graph, *_ = _agreement(tmp_path, capsys, converted, example, "image")
    # the int8 weights are the PT2E model's own, bit for bit
    frozen = {tuple(t.shape): t for t in converted.state_dict().values() if t.dtype == torch.int8}
    w = graph.tensors["head.weight"]
    np.testing.assert_array_equal(w.data, frozen[(10, 16)].numpy())


def test_pt2e_qat_kws(tmp_path, capsys):
    """QAT of the Conv1d network: torchao's convert leaves each conv + batch norm unfolded, as
    conv(x, w*k) -> quantize/dequantize -> / k -> + b -> batch_norm -> activation -> quantize. microtrain
    folds the division, the bias and the batch norm into the conv's own int8 weight scales (they
    cancel: w*k / k * k) and requantizes once, at the activation. The PT2E model also rounds the
    un-normalized conv output to its own grid (about twice as coarse as the activation's here) and
    saturates it (0.1-0.3 % of values): microtrain does neither. So: against the model without
    that intermediate requantization, the PTQ bound (3 LSB, 85 % identical); against the PT2E model
    as it is, the stated bound is 12 LSB (measured 10) with at least 40 % of codes identical
    (measured 47 %) and the same top-1 class on 95 % of the images (measured 98.7 %)."""
    module = train_float(user_net(KWS), "signal", samples=1000, epochs=1)
    converted, example = _qat(module, "signal")
    assert any(n.target is torch.ops.aten.div.Tensor for n in converted.graph.nodes)  # the unfolded batch norm
    _agreement(tmp_path / "a", capsys, converted, example, "signal", reference=_without_conv_output_requantization(
        converted))
    _, lsb, same, top1 = _agreement(tmp_path / "b", capsys, converted, example, "signal", bound=(12, 0.40))
    assert top1 >= 0.95, (lsb, same, top1)


def test_pt2e_outside_the_int8_spec_is_a_clear_error(tmp_path, capsys):
    """X86InductorQuantizer's int8 weights use [-128, 127]: the int8 spec (and the device's update
    rule) needs [-127, 127]."""
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    module = load_arch(RESIDUAL)
    converted, example = _ptq(module, "image",
                              X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config()), 8)
    torch.export.save(torch.export.export(converted, (example,)), tmp_path / "x86.pt2")
    line = cli_error(capsys, ["quantize", str(tmp_path / "x86.pt2"), "--out", str(tmp_path / "m")])
    assert "[-127, 127]" in line and "weight of" in line, line
