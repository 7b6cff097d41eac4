"""Read a ``.pt2`` archive (``torch.export.save``) without running anything in it.

``torch.export.load`` would unpickle weights with ``weights_only=False`` and custom or opaque
objects with pickle. Here the archive is checked first (no object payloads, by member name and
by the payload tables' ``path_name``) and then loaded with ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1``,
so only tensors are read. Lowering the program is ``torch_export.lower_exported``.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

from microtrain.frontend.float_plan import UnsupportedError


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    key = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    old = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ[key]
        else:
            os.environ[key] = old


def _object_payloads(z: zipfile.ZipFile) -> list[str]:
    """What ``torch.export.load`` would unpickle as Python objects: a member with a custom- or
    opaque-object name, and a payload-config entry whose ``path_name`` starts so (torch decides
    by that name, and a name such as ``opaque_obj_x/y`` gives the member another basename)."""
    from torch.export.pt2_archive.constants import CUSTOM_OBJ_FILENAME_PREFIX, OPAQUE_OBJ_FILENAME_PREFIX

    prefixes = (CUSTOM_OBJ_FILENAME_PREFIX, OPAQUE_OBJ_FILENAME_PREFIX)
    found = [n for n in z.namelist() if any(part.startswith(prefixes) for part in n.split("/"))]
    for n in z.namelist():
        if not n.endswith("_config.json"):
            continue
        try:
            entries = json.loads(z.read(n)).get("config", {})
            names = [str(meta.get("path_name", "")) for meta in entries.values()]
        except (ValueError, AttributeError, TypeError, zipfile.BadZipFile):
            found.append(f"{n} (not a payload table)")
            continue
        found += [f"{n}: {name}" for name in names if name.startswith(prefixes)]
    return found


def load_pt2(path: str | Path):
    """The ExportedProgram in a ``torch.export.save`` archive, loaded without running code."""
    import torch.ao.quantization.fx._decomposed  # noqa: F401  registers the quantized_decomposed ops of PT2E

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            objects = _object_payloads(z)
    except (OSError, zipfile.BadZipFile) as e:
        raise UnsupportedError(f"{path}: not a torch.export archive ({e})") from None
    if objects:
        raise UnsupportedError(f"{path}: holds pickled Python objects ({objects[0]}); only tensors are read, "
                               "export a program whose constants are tensors")
    try:
        with _weights_only_loads():
            return torch.export.load(path)
    except Exception as e:  # deserialisation errors, refused pickles, unknown ops
        raise UnsupportedError(f"{path}: torch.export.load refused it ({' '.join(str(e).split())[:300]})") from None
