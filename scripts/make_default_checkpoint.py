"""Make the committed checkpoints of the default CNN (``microtrain/zoo/checkpoints/``).

    .venv/bin/python scripts/make_default_checkpoint.py            # train + quantize
    .venv/bin/python scripts/make_default_checkpoint.py --skip-train   # re-quantize the float one

Trains the float model on Fashion-MNIST (seeded; ``zoo.default_cnn.train_default_cnn``),
saves its state dict as ``default_cnn_float.npz`` (plain arrays, no pickle), quantizes it
with 512 class-balanced training images (``frontend.torch_fx``) and saves the int8 graph as
``default_cnn_int8.json`` + ``.npz``. Prints float and int8 test accuracy (int8 by
``interp.batched``, the bit-exact twin of the reference interpreter).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from microtrain.data.datasets import load_dataset
from microtrain.data.preprocess import preprocess
from microtrain.frontend.torch_fx import import_torch_module
from microtrain.interp.batched import infer_batch
from microtrain.ir import save_graph
from microtrain.zoo import default_cnn as dc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calib-samples", type=int, default=512)
    p.add_argument("--skip-train", action="store_true", help="re-quantize the existing float checkpoint")
    args = p.parse_args()
    dc.CHECKPOINT_DIR.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if args.skip_train:
        model = dc.load_default_float()
    else:
        model = dc.train_default_cnn(epochs=args.epochs, seed=args.seed)
        dc.save_state_npz(model, dc.FLOAT_CHECKPOINT)
    calib = load_dataset("fashion-mnist", "train", limit=args.calib_samples, seed=args.seed)
    graph = import_torch_module(model, (1, 1, 28, 28), dc.to_float_input(calib.images), input_quant=dc.INPUT_QUANT,
                                preprocess=dc.PREPROCESS, name="default-cnn")
    save_graph(graph, dc.INT8_GRAPH)
    test = load_dataset("fashion-mnist", "test")
    float_acc = dc.float_accuracy(model, test.images, test.labels)
    int8_pred = np.concatenate([infer_batch(graph, preprocess(test.images[i:i + 500], graph)).argmax(1)
                                for i in range(0, len(test), 500)])
    int8_acc = float(np.mean(int8_pred == test.labels))
    print(f"wrote {dc.FLOAT_CHECKPOINT} and {dc.INT8_GRAPH}.json/.npz in {time.time() - start:.0f} s")
    print(f"Fashion-MNIST test (10000): float {100 * float_acc:.2f} %, int8 {100 * int8_acc:.2f} %")


if __name__ == "__main__":
    main()
