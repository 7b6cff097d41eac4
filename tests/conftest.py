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
