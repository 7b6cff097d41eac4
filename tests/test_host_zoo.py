"""A zoo model compiled with its published sparse scheme: C forward bit-exact with the reference
interpreter on 128x128 inputs, and a few training steps equal to the reference evaluation."""

from __future__ import annotations

import pytest
from conftest import zoo_path_or_skip
from test_host_codegen import _check_project, _project

from microtrain.frontend.heads import new_head
from microtrain.sparse.presets import load_scheme

pytestmark = [pytest.mark.host_c, pytest.mark.zoo, pytest.mark.slow]


def test_mbv2_published_scheme_bit_exact(tmp_path_factory, tmp_path):
    from microtrain.frontend.mcu_zoo import import_zoo_model

    graph = new_head(import_zoo_model(zoo_path_or_skip("mbv2-w0.35")), 10)
    scheme = load_scheme("mbv2-w0.35/99kb", graph)
    step, out, exe = _project(tmp_path_factory, graph, scheme, name="mbv2")
    _check_project(tmp_path, graph, step, out, exe, steps=3, n=3)
