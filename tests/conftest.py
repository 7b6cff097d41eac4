"""Shared fixtures. Tests are grouped by what they need (markers in pyproject.toml):
pure Python; ``host_c`` (gcc); ``target`` (arm-none-eabi-gcc + qemu); ``zoo`` (the
pretrained models of ../shared/models, skipped with the reason when absent)."""

from __future__ import annotations

import shutil

import pytest

from microtrain.models import ZOO_NAMES, shared_models_dir


def zoo_path_or_skip(name: str):
    path = shared_models_dir() / f"{name}.pkl"
    if not path.exists():
        pytest.skip(f"pretrained model {name}.pkl not found in {shared_models_dir()} "
                    "(the shared models folder is absent; set MICROTRAIN_MODELS)")
    return path


@pytest.fixture(params=ZOO_NAMES)
def zoo_model_path(request):
    return zoo_path_or_skip(request.param)


def require_tool(tool: str, package: str):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (Debian package {package}; `make test` installs it)")


def default_cnn_with_scheme():
    """The default CNN with a new 10-class head and a scheme training its last 3 layers' biases and
    the last 2 layers' weights, for the host and target codegen tests.

    Without the committed checkpoint, the same architecture with seeded random weights, quantized by
    the torch importer on 64 Fashion-MNIST images (random images if the dataset is absent)."""
    import numpy as np

    from microtrain.frontend.heads import new_head
    from microtrain.models import load_model
    from microtrain.scheme import make_scheme

    try:
        graph = load_model("default")
    except FileNotFoundError:
        import torch

        from microtrain.data.datasets import load_dataset
        from microtrain.frontend.torch_fx import import_torch_module
        from microtrain.zoo import default_cnn as dc

        torch.manual_seed(0)
        try:
            calib = load_dataset("fashion-mnist", "train", limit=64, seed=0).images
        except (FileNotFoundError, ValueError):
            calib = np.random.default_rng(0).integers(0, 256, (64, 28, 28)).astype(np.uint8)
        graph = import_torch_module(dc.build_default_cnn().eval(), (1, 1, 28, 28), dc.to_float_input(calib),
                                    input_quant=dc.INPUT_QUANT, preprocess=dc.PREPROCESS, name="default-cnn")
    graph = new_head(graph, 10)
    names = [n.name for n in graph.weighted_nodes()]
    return graph, make_scheme(graph, names[-3:], {n: 1.0 for n in names[-2:]})
