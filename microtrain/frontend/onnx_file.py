"""Read an .onnx file safely: protobuf only (nothing executed), external data only from regular
files inside the model's own folder, and onnx's checker before anything is lowered.
Lowering the model is ``onnx_import.lower_onnx``.
"""

from __future__ import annotations

from pathlib import Path

from microtrain.frontend.float_plan import UnsupportedError


def _external_tensors(graph) -> list:
    """The tensors of ``graph`` (initializers and node attributes, subgraphs included) whose data is
    in an external file."""
    from onnx import AttributeProto, TensorProto

    found = [t for t in graph.initializer if t.data_location == TensorProto.EXTERNAL]
    for node in graph.node:
        for a in node.attribute:
            tensors = [a.t] if a.type == AttributeProto.TENSOR else list(a.tensors)
            found += [t for t in tensors if t.data_location == TensorProto.EXTERNAL]
            for g in ([a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)):
                found += _external_tensors(g)
    return found


def _check_external_data(model, path: Path) -> None:
    """External data is read only from regular files inside the model's own folder (no absolute
    path, no ``..`` out of it, no symlink leading out of it): a model file names no other file."""
    folder = path.parent.resolve()
    for t in _external_tensors(model.graph):
        loc = {e.key: e.value for e in t.external_data}.get("location", "")
        real = (folder / loc).resolve() if loc and "\0" not in loc and not Path(loc).is_absolute() else None
        if real is None or folder not in real.parents or not real.is_file():
            raise UnsupportedError(f"{path}: tensor {t.name!r} reads its data from {loc!r}; only files inside the "
                                   f"model's folder {folder} are read")



def read_onnx(path: str | Path):
    """The checked ``onnx.ModelProto`` of an .onnx file. External data is loaded only after
    ``_check_external_data`` allowed it; a model that onnx's checker finds invalid (an unknown
    attribute, a missing input, a type the op does not take) is refused before it is lowered."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
        _check_external_data(model, path)
        load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model)
    except UnsupportedError:
        raise
    except onnx.checker.ValidationError as e:
        raise UnsupportedError(f"{path}: not a valid ONNX model ({' '.join(str(e).split())[:300]})") from None
    except Exception as e:  # DecodeError, OSError, external data out of bounds
        raise UnsupportedError(f"{path}: not a readable ONNX model ({' '.join(str(e).split())[:200]})") from None
    return model
