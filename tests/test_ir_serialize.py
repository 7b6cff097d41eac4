"""JSON + NPZ serialisation: lossless round trip, clear errors on malformed files, printer.

Round trip: random graphs (hypothesis) with arbitrary float scales and attributes are
saved and loaded; every tensor must be equal (shape, dtype, exact float scales, data and
its numpy dtype), nodes and attrs equal, printed graphs equal. Malformed files of every
kind must raise ``ModelFileError`` with a message naming the file and the problem.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microtrain.ir import Graph, GraphBuilder, ModelFileError, Op, QParams, Tensor, format_graph, load_graph, save_graph
from microtrain.ir.serialize import graph_to_dict

scales = st.floats(min_value=1e-9, max_value=1e3, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def random_graphs(draw) -> Graph:
    """A random verified chain: conv blocks (optionally residual) -> pool -> flatten -> fc -> dequantize."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    gb = GraphBuilder()
    h = draw(st.integers(1, 6))
    c = draw(st.integers(1, 5))
    cur = gb.add_input(Tensor("input", (1, h, h, c), "int8", QParams.per_tensor(draw(scales),
                                                                                draw(st.integers(-128, 127)))))
    for i in range(draw(st.integers(0, 3))):
        k = draw(st.sampled_from([1, 3]))
        dw = draw(st.booleans())
        out_c = c if dw else draw(st.integers(1, 5))
        groups = c if dw else 1
        w = rng.integers(-127, 128, size=(out_c, k, k, c // groups)).astype(np.int8)
        gb.add_tensor(Tensor(f"b{i}.w", w.shape, "int8", QParams.per_channel([draw(scales) for _ in range(out_c)]), w))
        gb.add_tensor(Tensor(f"b{i}.b", (out_c,), "int32", None,
                             rng.integers(-(2**31), 2**31 - 1, size=out_c, dtype=np.int64).astype(np.int32)))
        y = gb.add_tensor(Tensor(f"b{i}.y", (1, h, h, out_c), "int8",
                                 QParams.per_tensor(draw(scales), draw(st.integers(-128, 127)))))
        gb.add_node(f"blocks.{i}.conv", Op.CONV2D, [cur, f"b{i}.w", f"b{i}.b"], [y], stride=(1, 1),
                    padding=(k // 2,) * 4, groups=groups, act_min=draw(st.integers(-128, 0)), act_max=127,
                    note=draw(st.text(max_size=8)), factors=tuple(draw(st.lists(scales, max_size=3))))
        if out_c == c and draw(st.booleans()):
            r = gb.add_tensor(Tensor(f"b{i}.r", (1, h, h, c), "int8", QParams.per_tensor(draw(scales), 0)))
            gb.add_node(f"blocks.{i}.residual", Op.ADD, [cur, y], [r])
            y = r
        cur, c = y, out_c
    p = gb.add_tensor(Tensor("pooled", (1, 1, 1, c), "int8", QParams.per_tensor(draw(scales), 0)))
    gb.add_node("pool", Op.GLOBAL_AVG_POOL, [cur], [p])
    f = gb.add_tensor(Tensor("flat", (1, c), "int8", gb.tensors[p].quant))  # a reshape keeps its input's quant
    gb.add_node("flatten", Op.RESHAPE, [p], [f], shape=(1, c))
    k = draw(st.integers(1, 6))
    fw = rng.integers(-127, 128, size=(k, c)).astype(np.int8)
    gb.add_tensor(Tensor("fc.w", (k, c), "int8", QParams.per_channel([draw(scales) for _ in range(k)]), fw))
    gb.add_tensor(Tensor("fc.b", (k,), "int32", None, rng.integers(-1000, 1000, size=k).astype(np.int32)))
    lq = gb.add_tensor(Tensor("logits_q", (1, k), "int8", QParams.per_tensor(draw(scales), 0)))
    gb.add_node("classifier", Op.FULLY_CONNECTED, [f, "fc.w", "fc.b"], [lq])
    lf = gb.add_tensor(Tensor("logits", (1, k), "float32"))
    gb.add_node("deq", Op.DEQUANTIZE, [lq], [lf])
    meta = {"model": draw(st.text(max_size=10)),
            "preprocess": {"resolution": [h, h], "channels": 3, "range": [draw(scales), draw(scales)]}}
    return gb.build([lf], meta)


def assert_graphs_identical(a: Graph, b: Graph) -> None:
    assert list(a.tensors) == list(b.tensors)
    for name, t in a.tensors.items():
        u = b.tensors[name]
        assert t == u, name  # shape, dtype, QParams (exact floats), data values and numpy dtype
        if t.quant is not None:
            assert [s.hex() for s in t.quant.scale] == [s.hex() for s in u.quant.scale]
    assert a.nodes == b.nodes
    for n, m in zip(a.nodes, b.nodes, strict=True):
        assert dict(n.attrs) == dict(m.attrs) and all(type(n.attrs[k]) is type(m.attrs[k]) for k in n.attrs)
    assert a.inputs == b.inputs and a.outputs == b.outputs
    assert dict(a.meta) == dict(b.meta)
    assert format_graph(a) == format_graph(b)
    assert graph_to_dict(a) == graph_to_dict(b)


@settings(max_examples=30, deadline=None)
@given(random_graphs())
def test_round_trip_is_lossless(graph):
    with tempfile.TemporaryDirectory() as d:
        jpath, npath = save_graph(graph, Path(d) / "sub" / "model")
        assert jpath.name == "model.json" and npath.name == "model.npz"
        for spec in (jpath, npath, Path(d) / "sub" / "model"):
            assert_graphs_identical(graph, load_graph(spec))
        # Saving the loaded graph again gives byte-identical JSON.
        again = save_graph(load_graph(jpath), Path(d) / "again")
        assert again[0].read_text() == jpath.read_text()


@pytest.mark.parametrize("name", ["file", "allow_pickle", "a/b", "x.npy", "ünï", " sp", "../up", "args"])
def test_round_trip_any_tensor_name(tmp_path, name):
    # Tensor names become .npz member names: names that are keyword arguments of np.savez
    # ('file', 'allow_pickle') or look like paths must still round-trip.
    gb = GraphBuilder()
    gb.add_input(Tensor("x", (1, 3), "int8", QParams.per_tensor(0.1, 0)))
    gb.add_tensor(Tensor(name, (2, 3), "int8", QParams.per_channel([0.5, 0.25]),
                         np.arange(6, dtype=np.int8).reshape(2, 3)))
    gb.add_tensor(Tensor("b", (2,), "int32", None, np.array([1, -1], dtype=np.int32)))
    gb.add_tensor(Tensor("y", (1, 2), "int8", QParams.per_tensor(0.1, 0)))
    gb.add_node("fc", Op.FULLY_CONNECTED, ["x", name, "b"], ["y"])
    g = gb.build(["y"])
    save_graph(g, tmp_path / "m")
    assert_graphs_identical(g, load_graph(tmp_path / "m"))


# --- malformed files -----------------------------------------------------------------------

def _small_graph() -> Graph:
    gb = GraphBuilder()
    gb.add_input(Tensor("x", (1, 2, 2, 3), "int8", QParams.per_tensor(0.1, 1)))
    gb.add_tensor(Tensor("w", (2, 1, 1, 3), "int8", QParams.per_channel([0.5, 0.25]),
                         np.array([[[[1, -2, 3]]], [[[4, 5, -6]]]], dtype=np.int8)))
    gb.add_tensor(Tensor("b", (2,), "int32", None, np.array([7, -8], dtype=np.int32)))
    gb.add_tensor(Tensor("y", (1, 2, 2, 2), "int8", QParams.per_tensor(0.2, -128)))
    gb.add_node("conv", Op.CONV2D, ["x", "w", "b"], ["y"], stride=(1, 1), padding=(0, 0, 0, 0), groups=1,
                act_min=-128, act_max=127)
    return gb.build(["y"])


@pytest.fixture
def saved(tmp_path):
    jpath, npath = save_graph(_small_graph(), tmp_path / "m")
    return jpath, npath


def _edit_json(jpath: Path, edit) -> None:
    doc = json.loads(jpath.read_text())
    edit(doc)
    jpath.write_text(json.dumps(doc))


def _tensor_entry(doc: dict, name: str) -> dict:
    return next(t for t in doc["tensors"] if t["name"] == name)


def _expect_error(path: Path, *words: str) -> str:
    with pytest.raises(ModelFileError) as info:
        load_graph(path)
    msg = str(info.value)
    for w in words:
        assert w in msg, (w, msg)
    return msg


def test_missing_file(tmp_path, saved):
    jpath, npath = saved
    npath.unlink()
    _expect_error(jpath, "m.npz", "file not found")
    _expect_error(tmp_path / "nothing.json", "nothing.json", "file not found")


def test_truncated_npz(saved):
    jpath, npath = saved
    data = npath.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        npath.write_bytes(data[:cut])
        _expect_error(jpath, "m.npz", "cannot read tensor data", "truncated")


def test_npz_that_is_not_a_zip(saved):
    jpath, npath = saved
    npath.write_text("hello")
    _expect_error(jpath, "m.npz", "not an .npz")


@pytest.mark.parametrize("cut", [0, 1, 50, -3])
def test_truncated_json(saved, cut):
    jpath, _ = saved
    text = jpath.read_text()
    jpath.write_text(text[:cut] if cut >= 0 else text[:cut])
    _expect_error(jpath, "m.json", "not valid JSON")


@pytest.mark.parametrize("content, words", [
    ("[1, 2, 3]", ["not a microtrain graph", "list"]),
    ('{"format": "onnx"}', ["not a microtrain graph", "onnx"]),
    ('{"format": "microtrain-graph", "version": 99}', ["unsupported version 99"]),
    ('{"format": "microtrain-graph", "version": 1}', ["malformed graph document"]),
    ("\xff\xfe garbage", ["not valid JSON"]),
])
def test_invalid_json_documents(saved, content, words):
    jpath, _ = saved
    jpath.write_text(content, encoding="latin-1")
    _expect_error(jpath, "m.json", *words)


def test_ill_typed_field(saved):
    jpath, _ = saved
    _edit_json(jpath, lambda d: _tensor_entry(d, "y").__setitem__("shape", ["one", 2]))
    _expect_error(jpath, "m.json", "malformed graph document")


def test_missing_constant_data(saved):
    jpath, npath = saved
    with np.load(npath) as z:
        arrays = {k: z[k] for k in z.files if k != "w"}
    np.savez(npath, **arrays)
    _expect_error(jpath, "constant tensor 'w' has no data")


def test_unknown_op(saved):
    jpath, _ = saved
    _edit_json(jpath, lambda d: d["nodes"][0].__setitem__("op", "conv3d"))
    _expect_error(jpath, "node 'conv' has unknown op 'conv3d'")


def test_data_shape_differs_from_declared(saved):
    jpath, npath = saved
    with np.load(npath) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["w"] = arrays["w"].reshape(2, 3, 1, 1)
    np.savez(npath, **arrays)
    _expect_error(jpath, "m.json", "'w'", "data shape (2, 3, 1, 1) != declared (2, 1, 1, 3)")


def test_data_dtype_differs_from_declared(saved):
    jpath, npath = saved
    with np.load(npath) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["b"] = arrays["b"].astype(np.int64)
    np.savez(npath, **arrays)
    _expect_error(jpath, "'b'", "data dtype int64 != declared int32")


def test_declared_shape_mismatch_between_tensors(saved):
    jpath, _ = saved
    _edit_json(jpath, lambda d: _tensor_entry(d, "y").__setitem__("shape", [1, 3, 3, 2]))
    _expect_error(jpath, "node 'conv' (conv2d)", "'y'", "[1, 3, 3, 2]")


def test_mismatched_scale_counts(saved):
    jpath, _ = saved

    def edit(d):
        q = _tensor_entry(d, "w")["quant"]
        q["scale"], q["zero_point"] = [0.5, 0.25, 0.125], [0, 0, 0]

    _edit_json(jpath, edit)
    _expect_error(jpath, "node 'conv' (conv2d)", "'w'", "3 scales along axis 0")


def test_scales_and_zero_points_disagree(saved):
    jpath, _ = saved
    _edit_json(jpath, lambda d: _tensor_entry(d, "w")["quant"].__setitem__("zero_point", [0]))
    _expect_error(jpath, "'w'", "2 scales but 1 zero points")


def test_duplicate_tensor_in_file(saved):
    jpath, _ = saved
    _edit_json(jpath, lambda d: d["tensors"].append(dict(_tensor_entry(d, "y"))))
    _expect_error(jpath, "tensor 'y' is defined twice")


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_object_array_is_refused_and_never_run(saved, tmp_path):
    jpath, npath = saved
    marker = tmp_path / "pwned"
    with np.load(npath) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["w"] = np.array([_Payload(marker)], dtype=object)
    np.savez(npath, **arrays)  # numpy pickles object arrays
    with zipfile.ZipFile(npath) as zf:  # the payload really is in the file
        assert b"pwned" in zf.read("w.npy")
    _expect_error(jpath, "m.npz", "pickled Python objects", "allow_pickle=False")
    assert not marker.exists()


# --- printer --------------------------------------------------------------------------------

GOLDEN = """\
graph(x: int8[1, 2, 2, 3] q(0.1,1)) {
  y: int8[1, 2, 2, 2] q(0.2,-128) = conv2d(x, w, b) act_max=127 act_min=-128 groups=1 padding=0x0x0x0 stride=1x1  # conv
  p: int8[1, 1, 1, 2] q(0.0123457,-5) = global_avg_pool(y)  # pool
  f: int8[1, 2] q(0.0123457,-5) = reshape(p) shape=1x2  # flatten
  f32: float32[1, 2] = dequantize(f)  # deq
  return f32
}"""


def test_printer_golden():
    g = _small_graph()
    gb = GraphBuilder()
    gb.tensors, gb.nodes, gb.inputs = dict(g.tensors), list(g.nodes), list(g.inputs)
    gb.add_tensor(Tensor("p", (1, 1, 1, 2), "int8", QParams.per_tensor(1 / 81, -5)))
    gb.add_node("pool", Op.GLOBAL_AVG_POOL, ["y"], ["p"])
    gb.add_tensor(Tensor("f", (1, 2), "int8", QParams.per_tensor(1 / 81, -5)))
    gb.add_node("flatten", Op.RESHAPE, ["p"], ["f"], shape=(1, 2))
    gb.add_tensor(Tensor("f32", (1, 2), "float32"))
    gb.add_node("deq", Op.DEQUANTIZE, ["f"], ["f32"])
    g2 = gb.build(["f32"])
    assert format_graph(g2) == GOLDEN
    assert str(g2) == GOLDEN


def test_printer_marks_constants_and_per_channel():
    from microtrain.ir.printer import format_type

    g = _small_graph()
    assert format_type(g.tensors["w"]) == "int8[2, 1, 1, 3] q(per-channel[2]) const"
    assert format_type(g.tensors["b"]) == "int32[2] const"
