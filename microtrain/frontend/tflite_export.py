"""Exporter of a trained graph back into the .tflite file it was imported from.

``save_tflite(graph, path)``: the graph must come from ``import_tflite`` (its
``meta["tflite"]`` maps IR tensors to the file's tensors). The original file is unpacked
with the object API of the flatbuffer schema module (``tflite_schema``), every mapped
tensor gets the graph's values, and the model is packed again with flatbuffers' builder:

* weights and biases: the graph's int8 / int32 data, back in the file's layout
  (depthwise ``[O,kh,kw,1] -> [1,kh,kw,O]``), with their shape and per-channel scales (a
  new head: K output channels; the bias scales ``s_x * s_w[c]`` as float32, as the
  converter writes them); a weight that was per-tensor stays per-tensor while its scales
  are all equal;
* activations: the graph's quantization and shape (a new head changes the logits, and the
  shape-preserving SOFTMAX / DEQUANTIZE after them follows);
* a FULLY_CONNECTED / conv without a bias in the file whose zero bias training changed
  gets a new int32 bias tensor;
* everything else (operators, options, other tensors and buffers, metadata, signatures)
  is kept as it was. Buffers are 16-byte aligned, as the converter writes them.

So the exported file has the same operators and tensors and drops into the same TFLM
firmware (whose op resolver already has these ops). The original file must still be where
it was imported from, unchanged (its SHA-256 is checked); ``base`` points elsewhere.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from microtrain.frontend.tflite_schema import TFLiteError, builtin_names, read_model, schema
from microtrain.ir import Graph

INT8, INT32 = 9, 2  # TensorType codes


def _file_layout(data: np.ndarray, layout: str) -> np.ndarray:
    if layout == "1hwo":  # IR depthwise [O, kh, kw, 1] -> TFLite [1, kh, kw, O]
        return np.ascontiguousarray(data[..., 0].transpose(1, 2, 0)[None])
    return np.ascontiguousarray(data)


def _aligned_buffer_class(s):
    class AlignedBuffer(s.BufferT):
        """BufferT whose data vector starts on a 16-byte boundary (TFLite's force_align)."""

        def Pack(self, builder):  # noqa: N802 - the generated object API's name
            data = None
            if self.data is not None and len(self.data):
                raw = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(raw), 16)
                builder.head = builder.head - len(raw)
                builder.Bytes[builder.head:builder.head + len(raw)] = raw
                data = builder.EndVector()
            s.BufferStart(builder)
            if data is not None:
                s.BufferAddData(builder, data)
            s.BufferAddOffset(builder, self.offset)
            s.BufferAddSize(builder, self.size)
            return s.BufferEnd(builder)
    return AlignedBuffer


def _set_quant(s, tensor, scales, zero_points, axis: int = 0) -> bool:
    """Write the quantization if it differs from the file's; True when it did."""
    wide = np.asarray(scales, dtype=np.float64)
    if not np.array_equal(wide.astype(np.float32).astype(np.float64), wide):
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        raise TFLiteError(f"tensor {name!r}: scale {wide[0]!r} is not a float32; TFLM would requantize with "
                          "another value than microtrain did (round the scales to float32 first)")
    old = tensor.quantization
    if (old is not None and old.scale is not None and len(old.scale) == len(scales)
            and np.array_equal(np.asarray(old.scale, np.float32), np.asarray(scales, np.float32))
            and np.array_equal(np.asarray(old.zeroPoint, np.int64), np.asarray(zero_points, np.int64))
            and (len(scales) == 1 or int(old.quantizedDimension) == int(axis))):
        return False
    q = old or s.QuantizationParametersT()
    q.scale = np.asarray(scales, dtype=np.float32)
    q.zeroPoint = np.asarray(zero_points, dtype=np.int64)
    q.quantizedDimension = int(axis)
    q.min = q.max = None  # calibration ranges no longer describe a retrained tensor
    tensor.quantization = q
    return True


def _set_shape(tensor, shape) -> None:
    if tensor.shape is not None and [int(d) for d in tensor.shape] == [int(d) for d in shape]:
        return
    old_sig = list(tensor.shapeSignature) if tensor.shapeSignature is not None else None
    tensor.shape = np.asarray(shape, dtype=np.int32)
    if old_sig is not None and len(old_sig) == len(shape):
        sig = list(shape)
        if old_sig and old_sig[0] == -1:
            sig[0] = -1
        tensor.shapeSignature = np.asarray(sig, dtype=np.int32)
    elif old_sig is not None:
        tensor.shapeSignature = None


def check_base(graph: Graph, base: str | Path | None = None) -> Path:
    info = graph.meta.get("tflite")
    if not info:
        raise TFLiteError("this model was not imported from a .tflite file, so there is no file to write its "
                          "trained tensors into (export to .json instead)")
    path = Path(base) if base is not None else Path(info["path"])
    if not path.exists():
        raise TFLiteError(f"the .tflite this model was imported from is gone ({path}); export needs it")
    if base is None and hashlib.sha256(path.read_bytes()).hexdigest() != info["sha256"]:
        raise TFLiteError(f"{path} changed since the model was imported from it (SHA-256 differs); re-import it")
    return path


def export_model(graph: Graph, base: str | Path | None = None):
    """The unpacked ``ModelT`` of the original file with the graph's tensors written in."""
    s = schema()
    source = check_base(graph, base)
    model = read_model(source)
    info = graph.meta["tflite"]
    sg = model.subgraphs[0]
    owners: dict[int, int] = {}
    for t in sg.tensors:
        owners[t.buffer] = owners.get(t.buffer, 0) + 1
    requantized: set[str] = set()  # weights whose scales changed (a new head): their biases' scales follow
    for name, (index, layout) in info["tensors"].items():
        if name not in graph.tensors or index is None:
            continue
        t_ir = graph.tensors[name]
        t = sg.tensors[index]
        if t_ir.is_const:
            data = _file_layout(t_ir.data, layout)
            _write_data(s, model, t, data, owners)
            _set_shape(t, data.shape)
            if t_ir.quant is not None:  # a weight: per-channel along the file's channel axis
                scales = list(t_ir.quant.scale)
                axis = 3 if layout == "1hwo" else 0
                if len(set(scales)) == 1 and t.quantization is not None and len(t.quantization.scale) == 1:
                    scales, axis = scales[:1], 0
                if _set_quant(s, t, scales, [0] * len(scales), axis):
                    requantized.add(name)
        else:
            _set_shape(t, t_ir.shape)
            _set_quant(s, t, t_ir.quant.scale, t_ir.quant.zero_point)
    _bias_scales_and_missing_biases(s, model, graph, info, owners, requantized)
    _follow_shapes(model)
    return model


def _write_data(s, model, tensor, data: np.ndarray, owners: dict[int, int]) -> None:
    raw = np.frombuffer(data.astype(data.dtype.newbyteorder("<")).tobytes(), dtype=np.uint8)
    buf = model.buffers[tensor.buffer]
    old = None if buf.data is None else np.asarray(buf.data, dtype=np.uint8)
    if old is not None and old.shape == raw.shape and np.array_equal(old, raw):
        return
    if owners.get(tensor.buffer, 0) > 1 or tensor.buffer == 0:  # shared (deduplicated) or the empty buffer 0
        owners[tensor.buffer] -= 1
        model.buffers.append(s.BufferT())
        tensor.buffer = len(model.buffers) - 1
        owners[tensor.buffer] = 1
        buf = model.buffers[tensor.buffer]
    buf.data = raw.copy()


def _bias_scales_and_missing_biases(s, model, graph: Graph, info: dict, owners: dict[int, int],
                                    requantized: set[str]) -> None:
    """A bias tensor where the file had none and training made the bias nonzero; bias scales
    s_x * s_w[c] (float32, as the converter computes them) for those and for requantized weights."""
    sg = model.subgraphs[0]
    for node_name, op_index in info["nodes"].items():
        if node_name not in {n.name for n in graph.nodes}:
            continue
        node = graph.node(node_name)
        if len(node.inputs) != 3 or graph.tensors[node.inputs[1]].quant is None:
            continue
        x_t, w_t, b_t = (graph.tensors[n] for n in node.inputs)
        scales = (np.float32(x_t.quant.s) * np.asarray(w_t.quant.scale, dtype=np.float32)).astype(np.float32)
        op = sg.operators[op_index]
        mapped = info["tensors"].get(b_t.name, [None])[0]
        if mapped is not None and w_t.name not in requantized:
            continue
        if mapped is None:
            if not np.any(b_t.data):
                continue
            t = s.TensorT()
            t.name = f"{node_name}/bias (microtrain)".encode()
            t.type = INT32
            model.buffers.append(s.BufferT())
            t.buffer = len(model.buffers) - 1
            owners[t.buffer] = 1
            _write_data(s, model, t, b_t.data.astype(np.int32), owners)
            _set_shape(t, b_t.shape)
            sg.tensors.append(t)
            inputs = list(op.inputs)
            inputs = inputs + [-1] * (3 - len(inputs))
            inputs[2] = len(sg.tensors) - 1
            op.inputs = np.asarray(inputs, dtype=np.int32)
            mapped = inputs[2]
        t = sg.tensors[mapped]
        per_tensor = t.quantization is not None and t.quantization.scale is not None and \
            len(t.quantization.scale) == 1 and len(set(scales.tolist())) == 1
        _set_quant(s, t, scales[:1] if per_tensor else scales, [0] * (1 if per_tensor else len(scales)))


def _follow_shapes(model) -> None:
    """Shape-preserving ops after a changed head (SOFTMAX, DEQUANTIZE, QUANTIZE) take their input's shape."""
    names = builtin_names()
    sg = model.subgraphs[0]
    for op in sg.operators:
        oc = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode)), "")
        if name in ("SOFTMAX", "DEQUANTIZE", "QUANTIZE"):
            src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
            if list(dst.shape) != list(src.shape):
                _set_shape(dst, list(src.shape))


def pack_model(model) -> bytes:
    import flatbuffers

    s = schema()
    aligned = _aligned_buffer_class(s)
    for i, b in enumerate(model.buffers):
        nb = aligned()
        nb.data, nb.offset, nb.size = b.data, b.offset, b.size
        model.buffers[i] = nb
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def save_tflite(graph: Graph, path: str | Path, base: str | Path | None = None) -> Path:
    """Write ``graph`` (imported from a .tflite, maybe trained, maybe with a new head) as ``path``."""
    path = Path(path)
    data = pack_model(export_model(graph, base))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
