"""microtrain: on-device training for microcontrollers (int8, batch 1, 256 KB SRAM).

The public Python API (docs/api.md)::

    import microtrain as mt
    graph = mt.load_model("mbv2-w0.35")                        # every model spec the CLI takes
    result = mt.compile(graph, "mbv2-w0.35/99kb", "out/step", classes=10, target="cortex-m7")
    run = mt.run("out/step", "digits", steps=3, target="qemu")  # losses, memory, cost per step

Functions: load_model, save_model, run_int8, quantize, quantize_checkpoint, prepare, compile,
run, finetune, plan, evaluate, predict, inspect, run_fleet, join_fleet; errors a user can fix are ``UserError``.
The names are loaded on first use, so that ``import microtrain.ir`` (the IR alone) stays
free of torch and of every layer above the IR.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API: dict[str, str] = {
    "load_model": "microtrain.api.models", "save_model": "microtrain.api.models",
    "run_int8": "microtrain.api.models", "prepare": "microtrain.api.models", "Prepared": "microtrain.api.models",
    "quantize": "microtrain.api.quantize", "quantize_checkpoint": "microtrain.api.quantize",
    "compile": "microtrain.api.compile", "CompileResult": "microtrain.api.compile",
    "run": "microtrain.api.run", "RunResult": "microtrain.api.run",
    "finetune": "microtrain.api.finetune", "FinetuneResult": "microtrain.api.finetune",
    "plan": "microtrain.api.plan", "PlanResult": "microtrain.api.plan",
    "evaluate": "microtrain.api.evaluate", "predict": "microtrain.api.evaluate", "inspect": "microtrain.api.evaluate",
    "UserError": "microtrain.errors", "Graph": "microtrain.ir", "UpdateScheme": "microtrain.scheme",
    "run_fleet": "microtrain.api.fleet", "join_fleet": "microtrain.api.fleet",
}
__all__ = [
    "CompileResult", "FinetuneResult", "Graph", "PlanResult", "Prepared", "RunResult", "UpdateScheme", "UserError",
    "__version__", "compile", "evaluate", "finetune", "inspect", "load_model", "plan", "predict", "prepare",
    "join_fleet", "quantize", "quantize_checkpoint", "run", "run_fleet", "run_int8", "save_model",
]

if TYPE_CHECKING:
    from microtrain.api.compile import CompileResult, compile
    from microtrain.api.evaluate import evaluate, inspect, predict
    from microtrain.api.finetune import FinetuneResult, finetune
    from microtrain.api.fleet import join_fleet, run_fleet
    from microtrain.api.models import Prepared, load_model, prepare, run_int8, save_model
    from microtrain.api.plan import PlanResult, plan
    from microtrain.api.quantize import quantize, quantize_checkpoint
    from microtrain.api.run import RunResult, run
    from microtrain.errors import UserError
    from microtrain.ir import Graph
    from microtrain.scheme import UpdateScheme


def __getattr__(name: str) -> Any:
    # Deferred on purpose: the API pulls in torch and every layer; microtrain.ir must not.
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'microtrain' has no attribute {name!r}")
