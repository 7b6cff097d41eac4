"""Shared by the bring-your-own-model tests: the two user networks of tests/user_models/,
trained briefly in float on Fashion-MNIST (as a user would bring them), and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from microtrain.cli import main

USER_MODELS = Path(__file__).parent / "user_models"
RESIDUAL = f"{USER_MODELS / 'residual_pool.py'}:ResidualPoolNet"
KWS = f"{USER_MODELS / 'kws_conv1d.py'}:build"


def fashion(split: str, limit: int, seed: int = 0):
    from microtrain.data.datasets import load_dataset

    try:
        return load_dataset("fashion-mnist", split, limit=limit, seed=seed)
    except (FileNotFoundError, ValueError) as e:
        import pytest

        pytest.skip(f"Fashion-MNIST not installed ({e}); `make test` installs dataset-fashion-mnist")


def model_input(images: np.ndarray, kind: str) -> torch.Tensor:
    """uint8 [N, 28, 28] -> the float input of each network, pixel values in [0, 1]."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    return x.unsqueeze(1) if kind == "image" else x.transpose(1, 2).contiguous()  # [N, features, frames]


def user_net(arch: str, args: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """The user's network built with seeded initial weights (the same whatever ran before)."""
    from microtrain.frontend.user_model import load_arch

    torch.manual_seed(seed)
    return load_arch(arch, args or {})


def train_float(module: torch.nn.Module, kind: str, samples: int = 3000, epochs: int = 2, seed: int = 0):
    """A short float training run (Adam, batch 64): the user's 'trained checkpoint'."""
    ds = fashion("train", samples, seed)
    x, y = model_input(ds.images, kind), torch.from_numpy(ds.labels)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.train()
    for _ in range(epochs):
        for i in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(x[i]), y[i]).backward()
            opt.step()
    return module.eval()


def float_accuracy(module: torch.nn.Module, kind: str, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        return float((module(model_input(images, kind)).argmax(1).numpy() == labels).mean())


def cli(capsys, argv: list[str]) -> dict:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def cli_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
BRANCH = f"{USER_MODELS / 'branch_pool.py'}:BranchPoolNet"
