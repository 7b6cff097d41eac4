"""Importing .tflite files: every committed fixture (made by TensorFlow's converter) gives,
through the reference interpreter, TFLite Micro's int8 value of every tensor bit for bit
(the ``tflite-micro`` interpreter, live, on random and real inputs); the graph is what the
file says (node kinds, asymmetric padding, depth multiplier, folded Flatten chain, float
edges); bad files are one-line errors naming what and where; nothing in a file runs."""

from __future__ import annotations

import numpy as np
import pytest
from tflite_oracle import FIXTURES, fixture_path, inputs, mapped_activations, tflm_interpreter, tflm_run

import microtrain
from microtrain.frontend.tflite import import_tflite
from microtrain.frontend.tflite_schema import TFLiteError
from microtrain.interp.reference import run_graph
from microtrain.ir import Op


@pytest.mark.parametrize("name", FIXTURES)
def test_reference_interpreter_equals_tflm_on_every_tensor(name):
    graph = import_tflite(fixture_path(name))
    interp = tflm_interpreter(fixture_path(name))
    mapped = mapped_activations(graph)
    n = 1 if name in ("mobilenet_v2_035", "vww_mobilenet_v1_025") else 2
    for k, (x, fed) in enumerate(inputs(graph, n, seed=3)):
        ours = run_graph(graph, {graph.inputs[0]: x}, keep_all=True)
        theirs = tflm_run(interp, fed, mapped.values())
        out = graph.outputs[0]  # the public API's int8 inference too
        np.testing.assert_array_equal(microtrain.run_int8(graph, x).reshape(-1), theirs[mapped[out]].reshape(-1))
        for tensor, index in mapped.items():
            want = theirs[index].reshape(graph.tensors[tensor].shape)
            got = ours[tensor]
            if not np.array_equal(got, want):
                bad = np.flatnonzero(got.ravel() != want.ravel())
                producer = graph.producer(tensor)
                pytest.fail(f"{name} sample {k}: tensor {tensor!r} ({producer.op.value if producer else 'input'}) "
                            f"differs from TFLM at {bad.size} of {got.size} elements; first flat {bad[0]}: "
                            f"ours {got.ravel()[bad[0]]}, TFLM {want.ravel()[bad[0]]}")


def test_graph_says_what_the_file_says():
    kws = import_tflite(fixture_path("kws_ds_cnn"))
    first = kws.nodes[0]
    assert first.op is Op.CONV2D and kws.tensors[first.inputs[1]].shape == (64, 10, 4, 1)
    # 49x10 'same' with a 10x4 kernel at stride 2: TFLite pads 4 top / 5 bottom, 1 left / 1 right
    assert first.attrs["stride"] == (2, 2) and first.attrs["padding"] == (4, 1, 5, 1)
    assert first.attrs["activation"] == "RELU" and first.attrs["act_min"] == kws.tensors[first.outputs[0]].quant.z
    assert [n.op for n in kws.nodes][-4:] == [Op.AVG_POOL2D, Op.RESHAPE, Op.FULLY_CONNECTED, Op.SOFTMAX]
    assert kws.meta["preprocess"] == {"resolution": [49, 10], "channels": 1, "range": [0.0, 1.0]}

    vww = import_tflite(fixture_path("vww_mobilenet_v1_025"))
    strided = [n for n in vww.nodes if n.op is Op.CONV2D and n.attrs["stride"] == (2, 2)]
    assert strided and all(n.attrs["padding"] == (0, 0, 1, 1) for n in strided)  # even sizes: bottom/right only

    ops = import_tflite(fixture_path("ops_pool_pad"))
    by_op = {n.op: n for n in ops.nodes}
    assert by_op[Op.PAD].attrs["pads"] == ((0, 0), (1, 2), (0, 1), (0, 0))
    dw = next(n for n in ops.nodes if n.op is Op.CONV2D and n.attrs.get("depth_multiplier") == 2)
    assert dw.attrs["groups"] == 3 and ops.tensors[dw.inputs[1]].shape == (6, 3, 3, 1)
    assert by_op[Op.CONCAT].attrs["axis"] == 3 and by_op[Op.GLOBAL_AVG_POOL].attrs["rule"] == "tflm"

    fm = import_tflite(fixture_path("fashion_mnist_cnn"))  # SHAPE -> STRIDED_SLICE -> PACK folded away
    assert {n.op for n in fm.nodes} <= {Op.CONV2D, Op.MAX_POOL2D, Op.CONCAT, Op.RESHAPE, Op.FULLY_CONNECTED,
                                         Op.SOFTMAX}
    assert sum(n.op is Op.RESHAPE for n in fm.nodes) == 1

    ad = import_tflite(fixture_path("ad_autoencoder"))  # float in / float out: QUANTIZE / DEQUANTIZE stripped
    edges = ad.meta["tflite"]["edges"]
    assert edges["input"]["float"] and edges["output"]["float"]
    assert [n.op for n in ad.nodes] == [Op.FULLY_CONNECTED] * 10 and "preprocess" not in ad.meta


@pytest.mark.parametrize("name, expected", [
    ("bad_float", ["operator 0 CONV_2D", "is float32", "float (non-quantized) model", "serving_default"]),
    ("bad_int16", ["operator 0 QUANTIZE", "int16 activations", "_int16'"]),
    ("bad_two_inputs", ["has 2 inputs", "single-input"]),
    ("bad_unsupported_op", ["operator 1 TANH", "dense_tanh", "not supported", "supported: CONV_2D"]),
])
def test_bad_models_are_one_line_errors(name, expected):
    with pytest.raises(TFLiteError) as e:
        import_tflite(fixture_path(name))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(fixture_path(name)))
    for part in expected:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_truncated_and_foreign_files_are_refused(tmp_path):
    data = fixture_path("kws_ds_cnn").read_bytes()
    cases = {"truncated.tflite": data[: len(data) // 3], "header_only.tflite": data[:16], "empty.tflite": b"",
             "text.tflite": fixture_path("kws_ds_cnn").with_name("PROVENANCE.md").read_bytes(),
             "zeros.tflite": bytes(4096)}
    for file, content in cases.items():
        path = tmp_path / file
        path.write_bytes(content)
        with pytest.raises(TFLiteError) as e:
            import_tflite(path)
        msg = str(e.value)
        assert "\n" not in msg and file in msg
        assert "not a TFLite model" in msg or "corrupt or truncated" in msg, msg


def test_cli_reports_a_bad_file_in_one_line(tmp_path, capsys):
    from microtrain.cli import main

    path = tmp_path / "cut.tflite"
    path.write_bytes(fixture_path("kws_ds_cnn").read_bytes()[:5000])
    for args in (["inspect", str(path)], ["eval", str(fixture_path("bad_unsupported_op")), "--data", "digits"],
                 ["compile", str(fixture_path("bad_int16")), "--scheme", "bias-only", "--out", str(tmp_path / "p")]):
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "error:" in err, err


@pytest.mark.parametrize("name", FIXTURES)
def test_simulator_and_batched_interpreter_equal_the_reference(name):
    """The torch simulator (every tensor) and the batched interpreter (the output) on a batch of
    random and real samples give the reference interpreter's integers, hence TFLM's."""
    from microtrain.interp.batched import infer_batch
    from microtrain.sim.simulator import Simulator

    graph = import_tflite(fixture_path(name))
    x = np.concatenate([s for s, _ in inputs(graph, 2, seed=4)])
    ref = [run_graph(graph, {"input": x[i:i + 1]}, keep_all=True) for i in range(len(x))]
    sim = Simulator(graph).infer_codes(x)
    for tensor in ref[0]:
        if tensor in sim and not graph.tensors[tensor].is_const:
            np.testing.assert_array_equal(sim[tensor], np.concatenate([r[tensor] for r in ref]), err_msg=tensor)
    np.testing.assert_array_equal(infer_batch(graph, x), np.concatenate([r[graph.outputs[0]] for r in ref]))


def test_eval_predictions_are_tflm_predictions(capsys):
    """``microtrain eval`` of the trained Fashion-MNIST fixture: on every image it evaluates, the class
    it predicts is the argmax of TFLM's output for the same input."""
    import json

    from microtrain.cli import main
    from microtrain.data.datasets import load_dataset
    from microtrain.data.preprocess import preprocess

    path = fixture_path("fashion_mnist_cnn")
    capsys.readouterr()
    assert main(["eval", str(path), "--data", "fashion-mnist", "--limit", "300", "--seed", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    graph = import_tflite(path)
    ds = load_dataset("fashion-mnist", "test", limit=300, seed=2)
    x = preprocess(ds.images, graph)
    interp = tflm_interpreter(path)
    tflm = []
    for i in range(len(x)):
        interp.set_input(x[i:i + 1], 0)
        interp.invoke()
        tflm.append(int(np.argmax(interp.get_output(0).reshape(-1))))
    assert doc["predictions"] == tflm
    assert doc["samples"] == 300 and doc["accuracy"] > 0.8  # a trained model, not noise


def _mutate(model, what: str) -> None:
    """Edit the unpacked model (the schema's object API) into something microtrain cannot express."""
    from microtrain.frontend.tflite_schema import schema

    s, sg = schema(), model.subgraphs[0]
    first = sg.operators[0]
    if what == "dilation":
        first.builtinOptions.dilationHFactor = 2
    elif what == "tanh":
        first.builtinOptions.fusedActivationFunction = s.ActivationFunctionType.TANH
    elif what == "int4":
        sg.tensors[first.inputs[1]].type = s.TensorType.INT4
    elif what == "custom":
        code = s.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
        code.customCode, code.version = "MyOp", 1
        model.operatorCodes.append(code)
        sg.operators[1].opcodeIndex = len(model.operatorCodes) - 1
    elif what == "two_outputs":
        sg.outputs = [*sg.outputs, first.outputs[0]]
    elif what == "two_subgraphs":
        model.subgraphs.append(sg)


@pytest.mark.parametrize("what, expected", [
    ("dilation", ["operator 0 CONV_2D (inputs 'serving_default", "outputs '", "dilation 2x1 is not supported"]),
    ("tanh", ["operator 0 CONV_2D (inputs 'serving_default", "fused activation TANH is not supported"]),
    ("int4", ["operator 0 CONV_2D (inputs 'serving_default", "is int4; only int8 weights"]),
    ("custom", ["operator 1 CUSTOM(MyOp) (inputs '", "is not supported here"]),
    ("two_outputs", ["has 2 outputs", "single-output"]),
    ("two_subgraphs", ["has 2 subgraphs"]),
])
def test_what_cannot_be_expressed_is_a_one_line_error_naming_the_operator(tmp_path, what, expected):
    """Files the converter would write for layers microtrain does not model (made here by editing a
    fixture through the schema's object API): refused with the operator's index, its builtin name
    and its tensors; the custom operator is named, never run."""
    from microtrain.frontend.tflite_export import pack_model
    from microtrain.frontend.tflite_schema import read_model

    model = read_model(fixture_path("kws_ds_cnn"))
    _mutate(model, what)
    path = tmp_path / f"{what}.tflite"
    path.write_bytes(pack_model(model))
    with pytest.raises(TFLiteError) as e:
        import_tflite(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    for part in expected:
        assert part in msg, f"{part!r} not in {msg!r}"
