"""Make the committed .tflite fixtures (``tests/fixtures/tflite/``) with TensorFlow's converter.

TensorFlow is not a dependency of microtrain (it is the ``tflite-fixtures`` extra, never
needed by ``make test``). Its pinned numpy may not match the project's, so run this in its
own virtual environment:

    python3.11 -m venv /work/tfvenv && /work/tfvenv/bin/pip install tensorflow-cpu==2.21.0
    /work/tfvenv/bin/python scripts/make_tflite_fixtures.py            # all fixtures
    /work/tfvenv/bin/python scripts/make_tflite_fixtures.py kws_ds_cnn # some of them

Every model is built in Keras (seeded) and converted with full-integer post-training
quantization (``Optimize.DEFAULT`` + a representative dataset + ``TFLITE_BUILTINS_INT8``),
with int8 input and output unless said otherwise. The architectures are the MLPerf Tiny
reference shapes (written here from their published layer lists) plus a Keras
MobileNetV2-0.35 and a small CNN actually trained on Fashion-MNIST; small edge-case
models exercise single ops (asymmetric padding, pooling windows that overhang the input,
depth multipliers, PAD, CONCATENATION) and the bad inputs the importer must refuse.

The architecture-only models are not trained for a task: one epoch on random labels moves
their weights off the initialisation and sets their batch-norm statistics to those of the
data (momentum 0), so that the folded, quantized layers are not trivially regular and their
quantization ranges are those of a normalising network. The representative data are
uniform random inputs in the model's input range (and training images for the trained
CNN). ``tests/fixtures/tflite/PROVENANCE.md`` is rewritten with the versions, the command
and each file's size and SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

try:
    import keras  # noqa: E402
    from keras import layers  # noqa: E402
except ImportError:  # pragma: no cover
    sys.exit("make_tflite_fixtures.py needs TensorFlow (see the module doc for how to install it)")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "tflite"
SEED = 20260101
FIXTURES: dict[str, dict] = {}


def fixture(name: str, **spec):
    """Register a builder: returns (keras model, options) for ``convert``."""
    def deco(fn):
        FIXTURES[name] = {"build": fn, **spec}
        return fn
    return deco


# --- building blocks ----------------------------------------------------------------------

def conv_bn_relu(x, filters, kernel, strides=1, relu=True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x) if relu else x


def dw_bn_relu(x, strides=1, kernel=3):
    x = layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def settle(model, x_shape, classes, loss="sparse_categorical_crossentropy"):
    """One epoch on random data: weights move off their initial values, and batch norm keeps the
    statistics of the last batch (momentum 0), so that the folded layers normalise their outputs
    as a trained network's do and the quantization ranges are realistic (not the tiny ones an
    untouched moving variance of 1 would give)."""
    rng = np.random.default_rng(SEED)
    for layer in model._flatten_layers():
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = 0.0
    x = rng.uniform(0, 1, (64, *x_shape)).astype(np.float32)
    if loss == "mse":
        y = x
    else:
        y = rng.integers(0, classes, 64)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return model


# --- the MLPerf Tiny reference shapes -------------------------------------------------------

@fixture("vww_mobilenet_v1_025", note="MLPerf Tiny visual wake words: MobileNetV1 alpha 0.25, 96x96x3, 2 classes; "
                                      "stride-2 'same' convs on even sizes pad bottom/right only")
def vww_mobilenet_v1_025():
    inp = keras.Input((96, 96, 3), batch_size=1)
    x = conv_bn_relu(inp, 8, 3, strides=2)
    filters = 8
    for stride, double in ((1, True), (2, True), (1, False), (2, True), (1, False), (2, True),
                           (1, False), (1, False), (1, False), (1, False), (1, False), (2, True), (1, False)):
        x = dw_bn_relu(x, strides=stride)
        filters = filters * 2 if double else filters
        x = conv_bn_relu(x, filters, 1)
    x = layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]))(x)
    x = layers.Flatten()(x)
    out = layers.Dense(2, activation="softmax")(x)
    return settle(keras.Model(inp, out), (96, 96, 3), 2)


@fixture("kws_ds_cnn", note="MLPerf Tiny keyword spotting: DS-CNN, 49x10x1 MFCC input, a 10x4 stride-2 first conv, "
                            "4 depthwise-separable blocks of 64, average pool 24x5, 12 classes")
def kws_ds_cnn():
    inp = keras.Input((49, 10, 1), batch_size=1)
    x = conv_bn_relu(inp, 64, (10, 4), strides=2)
    x = layers.Dropout(0.2)(x)
    for _ in range(4):
        x = dw_bn_relu(x)
        x = conv_bn_relu(x, 64, 1)
    x = layers.Dropout(0.4)(x)
    x = layers.AveragePooling2D(pool_size=(24, 5))(x)
    x = layers.Flatten()(x)
    out = layers.Dense(12, activation="softmax")(x)
    return settle(keras.Model(inp, out), (49, 10, 1), 12)


@fixture("ic_resnet8", note="MLPerf Tiny image classification: ResNet-8 (3 residual stacks of 16/32/64, 1x1 stride-2 "
                            "shortcuts, ADD with fused ReLU), 32x32x3, 10 classes")
def ic_resnet8():
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = conv_bn_relu(inp, 16, 3)
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = conv_bn_relu(x, filters, 3, strides=stride)
        y = conv_bn_relu(y, filters, 3, relu=False)
        if stride != 1:
            x = layers.Conv2D(filters, 1, strides=stride, padding="same")(x)
        x = layers.ReLU()(layers.Add()([x, y]))
    x = layers.AveragePooling2D(pool_size=8)(x)
    x = layers.Flatten()(x)
    out = layers.Dense(10, activation="softmax")(x)
    return settle(keras.Model(inp, out), (32, 32, 3), 10)


@fixture("ad_autoencoder", io="float",
         note="MLPerf Tiny anomaly detection: fully connected autoencoder 640 -> 128x4 -> 8 -> 128x4 -> 640 "
              "(batch norm + ReLU), float input and output (QUANTIZE / DEQUANTIZE at the edges)")
def ad_autoencoder():
    inp = keras.Input((640,), batch_size=1)
    x = inp
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = layers.Dense(units)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    out = layers.Dense(640)(x)
    return settle(keras.Model(inp, out), (640,), 0, loss="mse")


@fixture("mobilenet_v2_035", note="keras.applications MobileNetV2 alpha 0.35 at 64x64x3, 10 classes (ZeroPadding2D -> "
                                  "PAD, ReLU6, residual ADD, global average pool -> MEAN)")
def mobilenet_v2_035():
    model = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35, weights=None, classes=10)
    inp = keras.Input((64, 64, 3), batch_size=1)
    return settle(keras.Model(inp, model(inp)), (64, 64, 3), 10)


# --- a model trained on a real task -------------------------------------------------------

@fixture("fashion_mnist_cnn", batch=None,
         note="a small CNN trained on Fashion-MNIST (Debian dataset-fashion-mnist, 3 epochs): conv, max pool, "
              "two branches CONCATENATED, Flatten with a dynamic batch (SHAPE -> STRIDED_SLICE -> PACK -> "
              "RESHAPE), a dense chain; inputs in [0, 1]")
def fashion_mnist_cnn():
    x_train, y_train = fashion_mnist("train")
    inp = keras.Input((28, 28, 1))
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    x = layers.MaxPooling2D(2)(x)
    a = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    b = layers.Conv2D(16, 1, padding="same", activation="relu")(x)
    x = layers.Concatenate()([a, b])
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    out = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inp, out)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=64, epochs=3, verbose=2)
    x_test, y_test = fashion_mnist("test")
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    FIXTURES["fashion_mnist_cnn"]["float_accuracy"] = float(acc)
    return model


def fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST through microtrain's own reader (numpy only), images float [0,1] NHWC."""
    sys.path.insert(0, str(ROOT))
    from microtrain.data.datasets import load_dataset

    ds = load_dataset("fashion-mnist", split)
    return ds.images[..., None].astype(np.float32) / 255.0, ds.labels.astype(np.int64)


# --- single-op edge cases -----------------------------------------------------------------

@fixture("ops_pool_pad", note="edge cases: 'same' average and max pools whose windows overhang the input (TFLM "
                              "divides by the in-image count), explicit asymmetric PAD, depth multiplier 2, a 3x1 "
                              "kernel, MEAN keeping dims, ReLU6, a 7x5 input, a dense chain ending without bias")
def ops_pool_pad():
    inp = keras.Input((7, 5, 3), batch_size=1)
    x = layers.ZeroPadding2D(((1, 2), (0, 1)))(inp)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same", activation="relu6")(x)
    y = layers.AveragePooling2D(3, strides=2, padding="same")(x)
    z = layers.MaxPooling2D((3, 2), strides=2, padding="same")(x)
    z = layers.Conv2D(6, (3, 1), padding="same")(z)
    z = layers.AveragePooling2D(2, strides=1, padding="same")(z)
    y = layers.Conv2D(6, 1)(y)
    x = layers.Concatenate()([y, z])
    x = layers.MaxPooling2D(2, strides=1)(x)
    x = layers.Lambda(lambda t: tf.reduce_mean(t, axis=[1, 2], keepdims=True))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(8, activation="relu")(x)
    out = layers.Dense(4, use_bias=False)(x)
    return settle(keras.Model(inp, out), (7, 5, 3), 4)


@fixture("ops_per_tensor", per_tensor=True,
         note="edge cases with per-tensor weights (the converter's per-channel quantization turned off): a 9x10x3 "
              "input, a 1x3 conv at stride (1, 2) clipped to [-1, 1] (fused RELU_N1_TO_1), PADV2 with a non-zero "
              "constant, a 3x2 depthwise conv with depth multiplier 3 at stride 2, a 2x3 'valid' conv, a dense "
              "chain")
def ops_per_tensor():
    inp = keras.Input((9, 10, 3), batch_size=1)
    x = layers.Conv2D(4, (1, 3), strides=(1, 2), padding="same")(inp)
    x = layers.Lambda(lambda t: tf.clip_by_value(t, -1.0, 1.0))(x)
    x = layers.Lambda(lambda t: tf.pad(t, [[0, 0], [2, 1], [1, 0], [0, 0]], constant_values=0.25))(x)
    x = layers.DepthwiseConv2D((3, 2), depth_multiplier=3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(8, (2, 3), padding="valid", activation="relu6")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(6, activation="relu")(x)
    out = layers.Dense(3)(x)
    return settle(keras.Model(inp, out), (9, 10, 3), 3)


@fixture("bad_float", quantize=False, note="bad input: a float model (no quantization)")
def bad_float():
    inp = keras.Input((8, 8, 1), batch_size=1)
    x = layers.Conv2D(4, 3, activation="relu")(inp)
    out = layers.Dense(3)(layers.Flatten()(x))
    return keras.Model(inp, out)


@fixture("bad_int16", int16=True, io="float", note="bad input: int16 activations (16x8 quantization)")
def bad_int16():
    inp = keras.Input((8, 8, 1), batch_size=1)
    x = layers.Conv2D(4, 3, activation="relu")(inp)
    out = layers.Dense(3)(layers.Flatten()(x))
    return settle(keras.Model(inp, out), (8, 8, 1), 3)


@fixture("bad_two_inputs", note="bad input: a model with two inputs")
def bad_two_inputs():
    a = keras.Input((4,), batch_size=1)
    b = keras.Input((4,), batch_size=1)
    out = layers.Dense(3)(layers.Concatenate()([layers.Dense(4)(a), layers.Dense(4)(b)]))
    return keras.Model([a, b], out)


@fixture("bad_unsupported_op", note="bad input: a TANH the importer does not support")
def bad_unsupported_op():
    inp = keras.Input((6,), batch_size=1)
    x = layers.Dense(5, activation="tanh", name="dense_tanh")(inp)
    out = layers.Dense(3)(x)
    return settle(keras.Model(inp, out), (6,), 3)


# --- conversion ---------------------------------------------------------------------------

def representative(model: keras.Model, name: str):
    rng = np.random.default_rng(SEED + 1)
    if name == "fashion_mnist_cnn":
        x, _ = fashion_mnist("train")
        samples = [x[i:i + 1] for i in rng.choice(len(x), 200, replace=False)]
    else:
        shapes = [tuple(1 if d is None else d for d in t.shape) for t in model.inputs]
        samples = [[rng.uniform(0, 1, s).astype(np.float32) for s in shapes] for _ in range(100)]
    def gen():
        for s in samples:
            yield s if isinstance(s, list) else [s]
    return gen


def convert(model: keras.Model, name: str, spec: dict) -> bytes:
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if spec.get("per_tensor"):  # one scale per weight tensor, as older converters and some vendor tools write
        conv._experimental_disable_per_channel = True
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    if spec.get("quantize", True):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative(model, name)
        ops = tf.lite.OpsSet
        int16 = ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        conv.target_spec.supported_ops = [int16 if spec.get("int16") else ops.TFLITE_BUILTINS_INT8]
        if spec.get("io", "int8") == "int8":
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    return conv.convert()


def write_provenance(made: dict[str, bytes]) -> None:
    """Rewrite PROVENANCE.md: rows of the fixtures made now, earlier rows kept for the others."""
    path = OUT / "PROVENANCE.md"
    kept = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("| ") and ".tflite |" in line:
                kept[line.split("|")[1].strip()] = line
    lines = ["# Provenance of the .tflite fixtures", "",
             "Made by `scripts/make_tflite_fixtures.py` (read its docstring for the exact command and the",
             "virtual environment it runs in), TensorFlow " + tf.__version__ + ", Keras " + keras.__version__ + ",",
             f"numpy {np.__version__}, seed {SEED}. Do not edit the files by hand; re-run the script.", "",
             "| file | bytes | sha256 (first 16) | what |", "|---|---|---|---|"]
    for file in sorted(p.name for p in OUT.glob("*.tflite")):
        name = file[:-len(".tflite")]
        if name not in made and file in kept:
            lines.append(kept[file])
            continue
        data = (OUT / file).read_bytes()
        spec = FIXTURES.get(name, {})
        note = spec.get("note", "")
        if "float_accuracy" in spec:
            note += f"; float test accuracy {100 * spec['float_accuracy']:.1f} %"
        lines.append(f"| {file} | {len(data)} | {hashlib.sha256(data).hexdigest()[:16]} | {note} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"fixtures to make (default all): {', '.join(FIXTURES)}")
    args = p.parse_args()
    names = args.names or list(FIXTURES)
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        sys.exit(f"unknown fixture(s) {', '.join(unknown)}; known: {', '.join(FIXTURES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    made = {}
    for name in names:
        keras.utils.set_random_seed(SEED)
        spec = FIXTURES[name]
        model = spec["build"]()
        data = convert(model, name, spec)
        (OUT / f"{name}.tflite").write_bytes(data)
        made[name] = data
        print(f"{name}: {len(data)} bytes")
    write_provenance(made)


if __name__ == "__main__":
    main()
