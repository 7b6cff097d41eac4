"""The compiled step with integer errors (``--grad-dtype int8|int16``) on the host: logits, loss
bits and trained weights equal to the reference interpreter's, step after step, on a sparse
scheme with a split trained weight, a sliced depthwise input and the classifier."""

from __future__ import annotations

import pytest
from test_host_codegen import _check_project, _project

from microtrain.compiler.pipeline import CompileOptions
from microtrain.compiler.toy_graphs import toy_mbnet
from microtrain.ir.ops import Op
from microtrain.scheme import make_scheme

pytestmark = pytest.mark.host_c


@pytest.mark.parametrize("grad_dtype", ["int8", "int16"])
def test_integer_errors_bit_exact_on_the_host(tmp_path_factory, tmp_path, grad_dtype):
    graph = toy_mbnet(0, size=8, classes=5)
    names = [n.name for n in graph.weighted_nodes()]
    scheme = make_scheme(graph, names[3:], {"blocks.1.pointwise1": 0.5, "blocks.1.depthwise": 0.5,
                                            "blocks.1.pointwise2": 1.0, "classifier": 1.0})
    step, out, exe = _project(tmp_path_factory, graph, scheme, CompileOptions(grad_dtype=grad_dtype),
                              name=f"err_{grad_dtype}")
    codes = [n for n in step.graph.nodes if n.op is Op.MASK_GRAD and n.attrs.get("error_bits")]
    assert codes and all(step.graph.tensors[n.outputs[0]].dtype == grad_dtype for n in codes)
    source = (out / "src" / "mt_model.c").read_text()
    assert f"mt_quantize_error_s{grad_dtype[3:]}" in source and "mt_conv2d_grad_weight_err_f32" in source
    _check_project(tmp_path, graph, step, out, exe)
