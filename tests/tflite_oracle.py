"""TFLite Micro as the oracle for imported .tflite models (the ``tflite-micro`` package's
interpreter runs TFLM's reference kernels).

``FIXTURES``: the committed models of ``tests/fixtures/tflite`` that import (the ``bad_*``
ones must not). ``tflm_run(interpreter, x, indices)`` runs TFLM on one sample and returns the
tensors it kept with those indices; ``inputs(graph, n, seed)`` gives ``n`` random int8 samples and ``n``
real ones (Fashion-MNIST test images through microtrain's preprocessing, for models with
an image input; the first 640 pixels of an image for the 640-wide autoencoder), with the
float values TFLM is fed for models whose input is float (QUANTIZE at the edge).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microtrain import quant

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "tflite"
FIXTURES = ("ad_autoencoder", "fashion_mnist_cnn", "ic_resnet8", "kws_ds_cnn", "mobilenet_v2_035", "ops_per_tensor",
            "ops_pool_pad",
            "vww_mobilenet_v1_025")


def fixture_path(name: str) -> Path:
    return FIXTURE_DIR / f"{name}.tflite"


def tflm_interpreter(path: Path | str | bytes):
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    cfg = runtime.InterpreterConfig.kPreserveAllTensors
    if isinstance(path, bytes):
        return runtime.Interpreter.from_bytes(path, intrepreter_config=cfg)
    return runtime.Interpreter.from_file(str(path), intrepreter_config=cfg)


def tflm_run(interpreter, x, indices) -> dict[int, np.ndarray]:
    """Invoke on one sample; the tensors of the subgraph with the given indices."""
    interpreter.set_input(x, 0)
    interpreter.invoke()
    return {int(i): np.asarray(interpreter.GetTensor(int(i), 0)["tensor_data"]) for i in indices}


def _real_images(graph, n: int, seed: int) -> np.ndarray:
    from microtrain.data.datasets import load_dataset
    from microtrain.data.preprocess import preprocess

    try:
        ds = load_dataset("fashion-mnist", "test", limit=n, seed=seed)
    except (FileNotFoundError, ValueError):
        pytest.skip("Fashion-MNIST not installed (Debian package dataset-fashion-mnist)")
    x = graph.tensors[graph.inputs[0]]
    if len(x.shape) == 4:
        return preprocess(ds.images, graph)
    flat = ds.images.reshape(len(ds.images), -1)[:, :x.shape[1]].astype(np.float32) / 255.0
    q = x.quant
    return quant.quantize_tflm(flat, q.s, q.z)


def inputs(graph, n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(int8 sample [1, ...], what TFLM is fed)] for n random and n real samples."""
    x_t = graph.tensors[graph.inputs[0]]
    rng = np.random.default_rng(seed)
    samples = [rng.integers(-128, 128, x_t.shape).astype(np.int8) for _ in range(n)]
    samples += [r[None] for r in _real_images(graph, n, seed)]
    edge = graph.meta["tflite"]["edges"]["input"]
    out = []
    for x in samples:
        if edge["float"]:  # TFLM gets floats; its QUANTIZE maps them back to exactly these codes
            fed = quant.dequantize_tflm(x, edge["scale"], edge["zero_point"])
            assert np.array_equal(quant.quantize_tflm(fed, edge["scale"], edge["zero_point"]), x)
            out.append((x, fed))
        else:
            out.append((x, x))
    return out


def mapped_activations(graph) -> dict[str, int]:
    """IR activation name -> index of its tensor in the file (graph input included)."""
    return {name: index for name, (index, _layout) in graph.meta["tflite"]["tensors"].items()
            if name in graph.tensors and not graph.tensors[name].is_const}
