"""The anomaly-detection autoencoder of MLPerf Tiny (the DCASE 2020 task 2 baseline shape).

    640 -> 128 -> 128 -> 128 -> 128 -> 8 -> 128 -> 128 -> 128 -> 128 -> 640

Each hidden layer is Dense + BatchNorm + ReLU, the output layer Dense (linear); the input is a
window of 5 frames x 128 log-mel bands. About 264k parameters: 258 KB of int8 weights, which stay
in flash; only the trained tensors take RAM. The anomaly score of a window is its reconstruction
error, the mean squared error between the output and the input.

``build_autoencoder`` makes the float model (widths configurable, for small tests),
``train_autoencoder`` trains it on float feature windows, ``fold_batch_norm`` turns it into the
Dense + ReLU chain the importer reads (each BatchNorm's eval statistics folded into the Dense
before it), and ``quantize_autoencoder`` imports that as an int8 Graph with calibrated
activations. The input is [N, 640, 1, 1] (NCHW; NHWC [1, 1, 1, 640] in the Graph), flattened
inside the model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from microtrain.ir import Graph

INPUTS = 640
HIDDEN = (128, 128, 128, 128, 8, 128, 128, 128, 128)


def build_autoencoder(inputs: int = INPUTS, hidden: tuple[int, ...] = HIDDEN, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    width = inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, inputs))
    return nn.Sequential(*layers)


def train_autoencoder(model: nn.Sequential, x: np.ndarray, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3,
                      seed: int = 0) -> nn.Sequential:
    """Adam on the mean squared reconstruction error of float windows x [N, inputs]."""
    g = torch.Generator().manual_seed(seed)
    data = torch.from_numpy(np.asarray(x, dtype=np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=g).split(batch_size):
            batch = data[idx]
            loss = ((model(batch[:, :, None, None]) - batch) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def fold_batch_norm(model: nn.Sequential) -> nn.Sequential:
    """The same function (in eval mode) as Flatten + (Linear + ReLU) x len(hidden) + Linear."""
    layers: list[nn.Module] = [nn.Flatten()]
    mods = list(model)
    i = 1
    while i < len(mods):
        lin = mods[i]
        fused = nn.Linear(lin.in_features, lin.out_features)
        w, b = lin.weight.detach().double(), lin.bias.detach().double()
        if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm1d):
            bn = mods[i + 1]
            k = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * k[:, None]
            b = (b - bn.running_mean.double()) * k + bn.bias.detach().double()
            i += 1
        with torch.no_grad():
            fused.weight.copy_(w.float())
            fused.bias.copy_(b.float())
        layers.append(fused)
        if i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU):
            layers.append(nn.ReLU())
            i += 1
        i += 1
    return nn.Sequential(*layers).eval()


def quantize_autoencoder(model: nn.Sequential, calibration: np.ndarray, name: str = "ad-autoencoder") -> Graph:
    """int8 Graph of the (BatchNorm-folded) autoencoder, activations calibrated on float windows."""
    from microtrain.frontend.torch_fx import import_torch_module

    folded = fold_batch_norm(model)
    x = torch.from_numpy(np.asarray(calibration, dtype=np.float32))[:, :, None, None]
    return import_torch_module(folded, (1, x.shape[1], 1, 1), x, name=name,
                               preprocess={"features": int(x.shape[1]), "source": "microtrain.data.vibration"})


def quantize_inputs(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Float windows [N, inputs] -> the graph's int8 inputs [N, 1, 1, inputs]."""
    from microtrain import quant

    q = graph.tensors[graph.inputs[0]].quant
    return quant.quantize(np.asarray(x, dtype=np.float64), q.s, q.z).reshape(len(x), 1, 1, -1)
