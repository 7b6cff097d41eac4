"""The safe loader of torch.save zips: exactly the four allowed globals, nothing runs."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from microtrain.frontend.safe_pickle import load_torch_zip, safe_loads
from microtrain.ir import ModelFileError


def write_torch_zip(path: Path, payload: bytes, member: str = "archive/data.pkl") -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(member, payload)
        zf.writestr("archive/version", "3\n")
    return path


class _OsSystem:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


class _Subprocess:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import subprocess

        return (subprocess.call, (["touch", str(self.marker)],))


class _Eval:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


HOSTILE = {
    "os.system": (_OsSystem, ("posix.system", "os.system")),
    "builtins.exec": (_Exec, ("builtins.exec", "__builtin__.exec")),
    "subprocess.call": (_Subprocess, ("subprocess.call", "commands.call")),
    "builtins.eval": (_Eval, ("builtins.eval", "__builtin__.eval")),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("protocol", [2, 4])
def test_hostile_pickle_is_refused_and_does_not_run(tmp_path: Path, kind: str, protocol: int) -> None:
    cls, names = HOSTILE[kind]
    marker = tmp_path / "pwned"
    # The payload hides inside an otherwise plausible model dict.
    payload = pickle.dumps({"first_conv": {"w": np.zeros(3, np.int8)}, "blocks": [cls(marker)]}, protocol=protocol)
    path = write_torch_zip(tmp_path / "evil.pkl", payload)
    with pytest.raises(ModelFileError) as exc:
        load_torch_zip(path)
    msg = str(exc.value)
    assert "refusing to load global" in msg
    assert any(n in msg for n in names), msg
    assert str(path) in msg
    assert not marker.exists(), "the hostile payload ran"


def test_sanity_the_hostile_payload_would_run_with_plain_pickle(tmp_path: Path) -> None:
    """Proves the hostile test above is meaningful: unrestricted unpickling does run it."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Subprocess(marker)))
    assert marker.exists()


def test_plain_data_with_numpy_arrays_round_trips(tmp_path: Path) -> None:
    obj = {"weight": np.arange(-8, 8, dtype=np.int8).reshape(2, 2, 2, 2), "bias": np.array([1, -2], np.int32),
           "w_scales": np.array([0.5, 0.25], np.float32), "x_scale": 0.1, "x_zero": -3, "k": (3, 3),
           "s": "name", "n": None, "l": [1, 2.5, True]}
    for protocol in (2, 4):  # protocol 5 pickles arrays via _frombuffer: not an allowed global
        path = write_torch_zip(tmp_path / f"ok{protocol}.pkl", pickle.dumps(obj, protocol=protocol))
        got = load_torch_zip(path)
        assert set(got) == set(obj)
        for k, v in obj.items():
            if isinstance(v, np.ndarray):
                assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
            else:
                assert got[k] == v


def test_legacy_stem_prefix_is_accepted(tmp_path: Path) -> None:
    path = write_torch_zip(tmp_path / "m.pkl", pickle.dumps({"a": 1}, protocol=2), member="m/data.pkl")
    assert load_torch_zip(path) == {"a": 1}


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "raw.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match="not a torch.save zip archive"):
        load_torch_zip(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        load_torch_zip(tmp_path / "absent.pkl")


def test_zip_without_data_pkl(tmp_path: Path) -> None:
    path = tmp_path / "empty.pkl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/other.bin", b"x")
    with pytest.raises(ModelFileError, match="no <prefix>/data.pkl"):
        load_torch_zip(path)


def test_truncated_archive(tmp_path: Path) -> None:
    good = write_torch_zip(tmp_path / "good.pkl", pickle.dumps({"w": np.zeros(1000, np.int8)}, protocol=2))
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 10):
        bad = tmp_path / f"cut{cut}.pkl"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=str(bad)):
            load_torch_zip(bad)


def test_truncated_pickle_stream() -> None:
    data = pickle.dumps({"w": np.zeros(10, np.int8), "x": [1, 2, 3]}, protocol=2)
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        safe_loads(data[: len(data) - 5], "t.pkl")


def test_persistent_ids_are_refused() -> None:
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", "0") if isinstance(obj, bytes) else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({"w": b"raw"})
    with pytest.raises(ModelFileError, match="persistent id"):
        safe_loads(buf.getvalue(), "p.pkl")


def test_other_numpy_globals_are_refused() -> None:
    """Only the four listed names: even a harmless-looking numpy function is refused."""
    data = pickle.dumps(np.add, protocol=2)
    with pytest.raises(ModelFileError, match="numpy.add"):
        safe_loads(data, "n.pkl")
