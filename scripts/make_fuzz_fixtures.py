"""Make the seed files of the ONNX and .pt2 fuzzers (``tests/fixtures/fuzz/``), from one tiny network.

    .venv/bin/python scripts/make_fuzz_fixtures.py      # needs the [dev] extra (onnxruntime, torchao)

The network: Conv2d(1->4, 3x3, padding 1) + ReLU -> global average pool -> Linear(4->3), on a
1x6x6 input, seeded weights. It is quantized to int8 the two ways a user brings an int8 model,
so that microtrain loads each with its own scales and zero points (no calibration data needed):

* ``tiny_qdq.onnx`` (+ ``tiny_qdq.onnx.data``): ``torch.onnx.export`` (opset 17), then
  onnxruntime's ``quantize_static`` (QDQ, int8 activations and weights, per channel) calibrated
  on 16 uniform random inputs; saved with the conv weight in an external-data file next to the
  model, as large exported models are, so the fuzzer reaches the external-data reader;
* ``tiny_pt2e.pt2``: torch.export, torchao's ``prepare_pt2e`` with the XNNPACK quantizer
  (symmetric, per channel), the same 16 inputs, ``convert_pt2e``, ``torch.export.save``.

``PROVENANCE.md`` next to them is rewritten with the versions and each file's size and SHA-256.
The fixtures are the seeds of ``benchmarks/fuzz_readers.py`` (and ``tests/test_fuzz_readers.py``).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "fuzz"


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def tiny_net() -> tuple[torch.nn.Module, np.ndarray]:
    torch.manual_seed(20261206)
    calib = np.random.default_rng(20261206).uniform(0, 1, (16, 1, 1, 6, 6)).astype(np.float32)
    return TinyNet().eval(), calib


def make_onnx(net: torch.nn.Module, calib: np.ndarray) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    raw = OUT / "tiny_float.onnx"
    torch.onnx.export(net, (torch.from_numpy(calib[0]),), str(raw), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"])

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"input": x} for x in calib])

        def get_next(self):
            return next(self.it, None)

    q = OUT / "tiny_qdq.tmp.onnx"
    quantize_static(str(raw), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    raw.unlink()
    model = onnx.load(str(q))
    q.unlink()
    (OUT / "tiny_qdq.onnx.data").unlink(missing_ok=True)
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))  # the conv weight (36 int8 values)
    from onnx.external_data_helper import set_external_data

    set_external_data(weight, "tiny_qdq.onnx.data")
    (OUT / "tiny_qdq.onnx.data").write_bytes(weight.raw_data)
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    onnx.save(model, str(OUT / "tiny_qdq.onnx"))
    onnx.checker.check_model(str(OUT / "tiny_qdq.onnx"))


def make_pt2e(net: torch.nn.Module, calib: np.ndarray) -> None:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    example = (torch.from_numpy(calib[0]),)
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(net, example).module(), quantizer)
    with torch.no_grad():
        for x in calib:
            prepared(torch.from_numpy(x))
    torch.export.save(torch.export.export(convert_pt2e(prepared), example), str(OUT / "tiny_pt2e.pt2"))


def write_provenance() -> None:
    import onnx
    import onnxruntime
    import torchao

    rows = [f"| {p.name} | {p.stat().st_size} | {hashlib.sha256(p.read_bytes()).hexdigest()[:16]} |"
            for p in sorted(OUT.iterdir()) if p.suffix in (".onnx", ".data", ".pt2")]
    (OUT / "PROVENANCE.md").write_text(
        "# Provenance of the fuzzer seeds\n\n"
        "Made by `.venv/bin/python scripts/make_fuzz_fixtures.py` (its docstring says how): torch "
        f"{torch.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, torchao "
        f"{torchao.__version__}, seed 20261206. Do not edit the files by hand; re-run the script.\n\n"
        "| file | bytes | sha256 (first 16) |\n|---|---:|---|\n" + "\n".join(rows) + "\n")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    net, calib = tiny_net()
    make_onnx(net, calib)
    make_pt2e(net, calib)
    write_provenance()
    print((OUT / "PROVENANCE.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
