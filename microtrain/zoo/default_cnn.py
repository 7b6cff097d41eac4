"""The built-in default model: a small MobileNetV2/MCUNet-style CNN for 28x28 gray images.

Layout (module paths are the IR node names after import, as for the zoo models)::

    first_conv      3x3 s2, 1 -> 16, BN, ReLU6                 28x28 -> 14x14
    blocks.0        inverted residual 16 -> 16, expand 2, s1, residual add
    blocks.1        inverted residual 16 -> 24, expand 3, s2   14x14 -> 7x7
    blocks.2        inverted residual 24 -> 24, expand 3, s1, residual add
    blocks.3        inverted residual 24 -> 32, expand 3, s2   7x7 -> 4x4
    blocks.4        inverted residual 32 -> 32, expand 4, s1, residual add
    pool, flatten, classifier (Linear 32 -> 10)

About 25k parameters; the largest activation pair is blocks.1's 14x14x48 expansion plus
its 14x14x16 input (about 12 KB int8), so it can train on a 256 KB microcontroller.
Input: Fashion-MNIST pixels mapped to [0, 1] (``PREPROCESS``), quantized with scale 1/255
and zero point -128, so that the uint8 pixel p becomes exactly p - 128.

The committed checkpoints in ``zoo/checkpoints/`` are made by
``python scripts/make_default_checkpoint.py`` (trains, quantizes, writes both files).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from microtrain.data.datasets import load_dataset
from microtrain.ir import load_graph
from microtrain.ir.graph import Graph

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
FLOAT_CHECKPOINT = CHECKPOINT_DIR / "default_cnn_float.npz"
INT8_GRAPH = CHECKPOINT_DIR / "default_cnn_int8"  # .json + .npz
PREPROCESS = {"resolution": [28, 28], "channels": 1, "range": [0.0, 1.0]}
INPUT_QUANT = (1.0 / 255.0, -128)
"""Input (scale, zero point): exact for uint8 pixels in [0, 1]."""

# (expand ratio, out channels, stride) per block; residual when stride 1 and in == out.
BLOCKS = ((2, 16, 1), (3, 24, 2), (3, 24, 1), (3, 32, 2), (4, 32, 1))
STEM_CHANNELS = 16


class InvertedResidual(nn.Module):
    """1x1 expansion -> 3x3 depthwise -> 1x1 projection (linear), ReLU6, optional residual."""

    def __init__(self, c_in: int, c_out: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = c_in * expand
        self.pointwise1 = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.pointwise2 = nn.Conv2d(hidden, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.pointwise1(x)))
        y = F.relu6(self.bn2(self.depthwise(y)))
        y = self.bn3(self.pointwise2(y))
        if self.use_residual:
            y = x + y
        return y


class DefaultCNN(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.first_conv = nn.Conv2d(1, STEM_CHANNELS, 3, 2, 1, bias=False)
        self.first_bn = nn.BatchNorm2d(STEM_CHANNELS)
        blocks, c = [], STEM_CHANNELS
        for expand, c_out, stride in BLOCKS:
            blocks.append(InvertedResidual(c, c_out, expand, stride))
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.first_bn(self.first_conv(x)))
        x = self.blocks(x)
        return self.classifier(self.dropout(self.flatten(self.pool(x))))


def build_default_cnn(num_classes: int = 10) -> DefaultCNN:
    return DefaultCNN(num_classes)


def to_float_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [N,28,28] -> float NCHW in the model's input range [0, 1]."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32)[:, None] / 255.0)


def train_default_cnn(epochs: int = 3, batch_size: int = 128, lr: float = 0.05, seed: int = 0,
                      limit: int | None = None, log=print) -> DefaultCNN:
    """Float training on Fashion-MNIST: SGD + momentum, cosine schedule, light augmentation."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = load_dataset("fashion-mnist", "train", limit=limit, seed=seed)
    x_all, y_all = to_float_input(train.images), torch.from_numpy(train.labels)
    model = build_default_cnn(train.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=4e-5, nesterov=True)
    steps = epochs * math.ceil(len(train) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for epoch in range(epochs):
        model.train()
        start, total, correct, loss_sum = time.time(), 0, 0, 0.0
        for batch in np.array_split(rng.permutation(len(train)), math.ceil(len(train) / batch_size)):
            idx = torch.from_numpy(batch)
            x, y = x_all[idx], y_all[idx]
            flip = torch.from_numpy(rng.random(len(batch)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)  # horizontal flips keep classes
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += len(batch)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(batch)
        log(f"epoch {epoch + 1}/{epochs}: loss {loss_sum / total:.4f} train acc {100 * correct / total:.2f} % "
            f"({time.time() - start:.0f} s)")
    return model.eval()


def float_accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch_size):
            logits = model(to_float_input(images[i:i + batch_size]))
            correct += int((logits.argmax(1).numpy() == labels[i:i + batch_size]).sum())
    return correct / len(labels)


def save_state_npz(model: nn.Module, path: str | Path) -> None:
    """The state dict as an .npz (no pickle): one array per entry, float32/int64."""
    np.savez_compressed(path, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})


def load_state_npz(model: nn.Module, path: str | Path) -> nn.Module:
    with np.load(path, allow_pickle=False) as f:
        state = {k: torch.from_numpy(f[k]) for k in f.files}
    model.load_state_dict(state)
    return model.eval()


def load_default_float(path: str | Path = FLOAT_CHECKPOINT) -> DefaultCNN:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: run `python scripts/make_default_checkpoint.py`")
    return load_state_npz(build_default_cnn(), path)


def load_default_graph() -> Graph:
    """The committed int8 default CNN (``zoo/checkpoints/default_cnn_int8.json`` + ``.npz``)."""
    if not INT8_GRAPH.with_suffix(".json").exists():
        raise FileNotFoundError(f"{INT8_GRAPH}.json missing: run `python scripts/make_default_checkpoint.py`")
    return load_graph(INT8_GRAPH)
