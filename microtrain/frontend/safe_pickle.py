"""Load a ``torch.save`` zip of plain data WITHOUT torch and without unrestricted unpickling.

A pickle is a program: ``pickle.load`` imports and calls whatever globals it names
(``os.system``, ``builtins.exec``...), so a model file from the internet could run code.
The MCU-zoo files need only four globals to rebuild numpy arrays (see the models README):

    numpy.core.multiarray._reconstruct   (numpy >= 2 moved it to numpy._core.multiarray)
    numpy.ndarray, numpy.dtype           (the array's class and element type)
    _codecs.encode                       (how protocol-2 pickles store the raw bytes)

``SafeUnpickler.find_class`` returns exactly those and refuses every other name before
anything is imported, so a refused payload never runs. Persistent ids (torch's storage
references, which these files do not use) are refused too: resolving them would need torch.

The ``torch.save`` container is a zip with ``<prefix>/data.pkl`` (prefix ``archive`` in
current torch, the file stem in older versions).
"""

from __future__ import annotations

import codecs
import io
import pickle
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from microtrain.ir import ModelFileError


def _reconstruct() -> Any:
    # numpy 2 keeps the implementation in numpy._core; numpy 1 in numpy.core.
    try:
        from numpy._core.multiarray import _reconstruct as fn  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn  # type: ignore[attr-defined]
    return fn


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,
}
"""(module, name) -> a thunk returning the object; nothing is imported for other names."""


class SafeUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only ``ALLOWED_GLOBALS`` and no persistent ids."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        thunk = ALLOWED_GLOBALS.get((module, name))
        if thunk is None:
            allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
            raise ModelFileError(f"{self.source}: refusing to load global {module}.{name} "
                                 f"(a model file may only reference {allowed}); the file is not a "
                                 "plain-data MCU-zoo model and may contain code")
        return thunk()

    def persistent_load(self, pid: Any) -> Any:
        raise ModelFileError(f"{self.source}: refusing persistent id {str(pid)[:80]!r} (torch tensor "
                             "storage); MCU-zoo files hold numpy arrays only")


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with ``SafeUnpickler``; every failure becomes a ModelFileError."""
    try:
        return SafeUnpickler(io.BytesIO(data), source).load()
    except ModelFileError:
        raise
    except (pickle.UnpicklingError, EOFError) as e:
        raise ModelFileError(f"{source}: truncated or corrupt pickle ({type(e).__name__}: {e})") from None
    except Exception as e:  # malformed opcodes surface as many exception types
        raise ModelFileError(f"{source}: malformed pickle ({type(e).__name__}: {e})") from None


def _data_pkl_name(zf: zipfile.ZipFile, source: str) -> str:
    names = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
    if not names:
        raise ModelFileError(f"{source}: zip archive has no <prefix>/data.pkl; not a torch.save file "
                             f"(members: {', '.join(zf.namelist()[:5])})")
    if len(names) > 1:
        raise ModelFileError(f"{source}: zip archive has several data.pkl members: {', '.join(names)}")
    return names[0]


def load_torch_zip(path: str | Path) -> Any:
    """The object pickled in a ``torch.save`` zip file, rebuilt with only the allowed globals."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ModelFileError(f"{source}: no such file")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as f:
            head = f.read(4)
        if head.startswith(b"PK"):
            what = "a truncated or damaged zip archive"
        elif head[:1] == b"\x80":
            what = "a bare pickle, which microtrain never unpickles"
        else:
            what = "neither a zip archive nor a pickle"
        raise ModelFileError(f"{source}: not a model file microtrain accepts ({what}); an MCU-zoo model is a "
                             "torch.save zip archive of plain data, and this is not a torch.save zip archive")
    try:
        with zipfile.ZipFile(path) as zf:
            data = zf.read(_data_pkl_name(zf, source))
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise ModelFileError(f"{source}: damaged zip archive ({e})") from None  # NotImplemented: a zip feature
    return safe_loads(data, f"{source}:data.pkl")
