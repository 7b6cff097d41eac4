"""The CLI is a thin shell over the Python API: no verb loads a model, a checkpoint or a scheme
itself (that is written once, in ``microtrain/api/``), and every verb calls the API."""

from __future__ import annotations

import ast
from pathlib import Path

import microtrain.cli as cli

CLI = Path(cli.__file__).parent
LOADING_MODULES = ("microtrain.models", "microtrain.frontend", "microtrain.zoo", "microtrain.ir",
                   "microtrain.sparse.presets", "microtrain.scheme", "microtrain.data")
"""Where models, checkpoints, schemes and datasets are loaded: the API's business, not the CLI's."""
LOADING_CALLS = {"load_model", "load_graph", "load_state_dict", "load_scheme", "new_head", "import_zoo_model",
                 "load_dataset"}


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.module, node.lineno)] + [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return out


def test_cli_loads_no_model_itself():
    found = []
    for path in sorted(CLI.glob("*.py")):
        tree = ast.parse(path.read_text())
        for name, line in _imports(tree):
            if name.startswith(LOADING_MODULES) or name in ("torch.load",):
                found.append(f"{path.name}:{line} imports {name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in LOADING_CALLS:
                found.append(f"{path.name}:{node.lineno} defines {node.name}")
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
                if called in LOADING_CALLS and owner != "microtrain" or (owner, called) == ("torch", "load"):
                    found.append(f"{path.name}:{node.lineno} calls {called}")
    assert not found, "the CLI loads models itself; call the API (microtrain/api/) instead:\n" + "\n".join(found)


def test_every_verb_calls_the_api():
    for verb in cli.VERB_MODULES:
        tree = ast.parse((CLI / f"{verb.replace('-', '_')}.py").read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                 and isinstance(n.func.value, ast.Name) and n.func.value.id == "microtrain"]
        assert calls, f"cli/{verb}.py does not call the API (microtrain.<function>)"
