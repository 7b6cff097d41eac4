"""The packages of microtrain import downwards only, and no two import each other.

Read from the source (every ``import`` statement, also those inside functions), so a cycle
cannot hide behind a deferred import. The layers, bottom first (docs/concepts.md shows them):
"""

from __future__ import annotations

import ast
from pathlib import Path

import microtrain

LAYERS: list[tuple[str, set[str]]] = [
    ("types", {"ir", "scheme", "errors", "units"}),        # the IR + op registry, UpdateScheme, UserError, sizes
    ("arithmetic", {"quant", "runtime"}),                   # int8 arithmetic, update rounding, C twins
    ("executors", {"interp", "sim"}),                       # reference interpreter, torch simulator
    ("importers", {"frontend", "zoo", "data", "models"}),   # model and dataset loading
    ("compiler", {"compiler"}),
    ("codegen", {"codegen"}),
    ("targets", {"targets"}),
    ("orchestration", {"sparse", "train", "report", "fleet"}),  # analysis, search, training loops, reports, fleet
    ("api", {"api", "__init__"}),                            # microtrain/__init__.py: the public Python API
    ("cli", {"cli", "demo", "demo_ondevice", "demo_cloud"}),
]
LAYER = {pkg: i for i, (_, pkgs) in enumerate(LAYERS) for pkg in pkgs}
ROOT = Path(microtrain.__file__).parent


def _package(module: str) -> str:
    """``microtrain.ir.graph`` -> ``ir``; ``microtrain`` itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports() -> dict[tuple[str, str], list[str]]:
    """(importer package, imported package) -> the places (file:line) of such imports."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent)
        src = _package(".".join(rel.with_suffix("").parts).removesuffix(".__init__"))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # ``from microtrain import x``: the submodule x if there is one, else the API
                targets = ([f"microtrain.{a.name}" if (ROOT / a.name).exists() or (ROOT / f"{a.name}.py").exists()
                            else "microtrain" for a in node.names] if node.module == "microtrain" else [node.module])
            for t in targets:
                if t == "microtrain" or t.startswith("microtrain."):
                    dst = _package(t)
                    if dst != src:
                        edges.setdefault((src, dst), []).append(f"{rel}:{node.lineno}")
    return edges


def test_every_package_has_a_layer():
    pkgs = {p.stem if p.suffix == ".py" else p.name for p in ROOT.iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.name != "__main__.py"}
    assert pkgs - set(LAYER) == set(), f"packages without a layer (add them to LAYERS): {sorted(pkgs - set(LAYER))}"


def test_imports_point_downwards():
    upward = [f"{src} ({LAYERS[LAYER[src]][0]}) imports {dst} ({LAYERS[LAYER[dst]][0]}) at {', '.join(where)}"
              for (src, dst), where in sorted(_imports().items()) if LAYER[dst] > LAYER[src]]
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for src, dst in _imports():
        graph.setdefault(src, set()).add(dst)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "package import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
