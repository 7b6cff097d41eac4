"""The three zoo models compiled with a published sparse scheme: C forward bit-exact with the
reference interpreter on 128x128 inputs (through the banded / fused early stage), training
steps equal to the reference evaluation, and the arena high-water equal to the plan."""

from __future__ import annotations

import pytest
from conftest import zoo_path_or_skip
from test_host_codegen import _check_project, _project

from microtrain.frontend.heads import new_head
from microtrain.sparse.presets import load_scheme

pytestmark = [pytest.mark.host_c, pytest.mark.zoo, pytest.mark.slow]


@pytest.mark.parametrize("model,scheme", [("mbv2-w0.35", "mbv2-w0.35/99kb"), ("mcunet-5fps", "mcunet-5fps/49kb"),
                                          ("proxyless-w0.3", "proxyless-w0.3/98kb")])
def test_zoo_published_scheme_bit_exact(tmp_path_factory, tmp_path, model, scheme):
    from microtrain.frontend.mcu_zoo import import_zoo_model

    graph = new_head(import_zoo_model(zoo_path_or_skip(model)), 10)
    step, out, exe = _project(tmp_path_factory, graph, load_scheme(scheme, graph), name=model)
    steps = 3 if model == "mbv2-w0.35" else 1
    _check_project(tmp_path, graph, step, out, exe, steps=steps, n=steps + 1)
