"""Folding of the shape arithmetic in .tflite files (SHAPE -> STRIDED_SLICE -> PACK).

Keras' ``Flatten`` with a dynamic batch converts to ``RESHAPE(x, PACK(STRIDED_SLICE(
SHAPE(x)), -1))``: the new shape is computed at run time from the input's shape. With the
batch fixed at 1 every value is known at import time, so these operators are evaluated
here on the static shapes (int32 numpy arrays kept in ``_Importer.consts``) and leave no
node in the graph; the RESHAPE that consumes the result checks it against its output
tensor. Only what that chain needs is implemented: SHAPE of a tensor, a 1-D
STRIDED_SLICE with begin/end/shrink masks, PACK along axis 0.
"""

from __future__ import annotations

import numpy as np

FOLDED = ("SHAPE", "STRIDED_SLICE", "PACK")


def _value(imp, index: int) -> np.ndarray:
    if index in imp.consts:
        return imp.consts[index]
    t = imp.info(index)
    imp.expect(t.data is not None and t.dtype in ("int32", "int64"),
               f"operand {t.name!r} is not a constant integer tensor (only static shape arithmetic is folded)")
    return t.data.astype(np.int64)


def fold(imp, op) -> None:
    """Evaluate one SHAPE / STRIDED_SLICE / PACK on constants; the result goes to ``imp.consts``."""
    if op.name == "SHAPE":
        src = op.inputs[0]
        shape = imp.info(src).shape
        imp.expect(len(shape) >= 1 and shape[0] == 1, f"SHAPE of {list(shape)} (only batch 1)")
        result = np.asarray(shape, dtype=np.int64)
    elif op.name == "STRIDED_SLICE":
        o = op.options
        imp.expect(int(o.ellipsisMask) == 0 and int(o.newAxisMask) == 0, "ellipsis or new-axis masks")
        x, begin, end, strides = (_value(imp, i) for i in op.inputs[:4])
        imp.expect(x.ndim == 1 and begin.shape == end.shape == strides.shape == (1,), "only a 1-D slice is folded")
        b = None if int(o.beginMask) & 1 else int(begin[0])
        e = None if int(o.endMask) & 1 else int(end[0])
        imp.expect(int(strides[0]) != 0, "stride 0")
        result = x[b:e:int(strides[0])]
        if int(o.shrinkAxisMask) & 1:
            imp.expect(result.size == 1, "shrinking a slice of more than one element")
            result = result.reshape(())
    else:  # PACK
        axis = int(op.options.axis)
        parts = [_value(imp, i) for i in op.inputs]
        imp.expect(all(p.shape == parts[0].shape for p in parts), "PACK of different shapes")
        result = np.stack(parts, axis=axis)
    imp.consts[op.outputs[0]] = result


def resolve_shape(shape: np.ndarray, size: int) -> tuple[int, ...]:
    """A RESHAPE shape operand (one -1 allowed) for an input of ``size`` elements, as a tuple."""
    dims = [int(d) for d in shape]
    if dims.count(-1) == 1:
        known = int(np.prod([d for d in dims if d != -1])) or 1
        dims[dims.index(-1)] = size // known
    return tuple(dims)
