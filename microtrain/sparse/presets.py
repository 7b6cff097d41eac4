"""Named update schemes: ``preset(name, graph) -> UpdateScheme`` and ``load_scheme(arg, graph)``.

Generic presets (any graph; "layers" are ``graph.weighted_nodes()``, the classifier last):
  full               weights and biases of every layer
  bias-only          every bias (no weights)
  classifier-only    weights and bias of the classifier
  last-k:<k>         weights and biases of the last k layers (classifier included)
  last-blocks:<n>    weights and biases of every layer of the last n blocks
                     (``blocks.{i}.*`` node names) plus the classifier
Published schemes of the MCU zoo README (10-class head), ``<model>/<budget>``: conv
indices count from the input, classifier excluded; ratio 0 means that conv's bias only;
``n_bias`` = biases of the last n convs; the classifier's weights and bias are always
updated. Kept channels are chosen by ``make_scheme`` (largest magnitude by default).
"""

from __future__ import annotations

import re
from pathlib import Path

from microtrain.ir.graph import Graph
from microtrain.scheme import SchemeError, UpdateScheme, check_scheme, make_scheme

# model -> budget -> (n_bias, conv indices, ratios), from ../shared/models/README.md
PUBLISHED: dict[str, dict[str, tuple[int, tuple[int, ...], tuple[float, ...]]]] = {
    "mcunet-5fps": {
        "49kb": (20, (23, 24, 27, 30, 33, 39), (0, .25, .5, .5, 0, 0)),
        "99kb": (22, (21, 24, 27, 30, 36, 39), (1, 1, 1, 1, .125, .25)),
        "148kb": (23, (21, 24, 27, 30, 36, 39), (1, 1, 1, 1, 1, .5)),
    },
    "mbv2-w0.35": {
        "99kb": (25, (27, 30, 33, 36, 39, 42, 45, 48), (1, 1, 1, 1, 1, .125, .5, 1)),
        "138kb": (34, (27, 30, 33, 36, 39, 42, 45, 48), (1,) * 8),
    },
    "proxyless-w0.3": {
        "98kb": (25, (36, 39, 42, 45, 48, 51, 54, 57), (1, .5, 1, 1, .25, .5, 1, 1)),
        "148kb": (45, (36, 39, 42, 45, 48, 51, 54, 57), (1,) * 8),
    },
}
# conv counts of the published models (classifier excluded): a preset checks the graph has them
CONV_COUNTS = {"mcunet-5fps": 42, "mbv2-w0.35": 51, "proxyless-w0.3": 60}
GENERIC = ("full", "bias-only", "classifier-only", "last-k:<k>", "last-blocks:<n>")


def preset_names() -> list[str]:
    return list(GENERIC) + [f"{m}/{b}" for m, budgets in PUBLISHED.items() for b in budgets]


def _block_of(name: str) -> int | None:
    m = re.match(r"blocks\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def _published(model: str, budget: str, graph: Graph, **kw) -> UpdateScheme:
    n_bias, idx, ratios = PUBLISHED[model][budget]
    layers = [n.name for n in graph.weighted_nodes()]
    convs, classifier = layers[:-1], layers[-1]
    source = graph.meta.get("model")
    if len(convs) != CONV_COUNTS[model] or (source and source in CONV_COUNTS and source != model):
        raise SchemeError(f"preset {model}/{budget} is for {model} ({CONV_COUNTS[model]} convs), but this model "
                          f"is {source or 'unnamed'} with {len(convs)} convs; use a preset of its own model or "
                          f"a generic one ({', '.join(GENERIC)})")
    weights = {convs[i]: float(r) for i, r in zip(idx, ratios, strict=True) if r > 0}
    weights[classifier] = 1.0
    biases = convs[len(convs) - n_bias:] + [classifier]
    return make_scheme(graph, biases, weights, name=f"{model}/{budget}", **kw)


def preset(name: str, graph: Graph, **kw) -> UpdateScheme:
    """The scheme ``name`` for ``graph``; ``kw`` goes to ``make_scheme`` (head, criterion)."""
    layers = [n.name for n in graph.weighted_nodes()]
    if not layers:
        raise SchemeError("the model has no conv/linear layers to train")
    if name == "full":
        return make_scheme(graph, layers, {n: 1.0 for n in layers}, name=name, **kw)
    if name == "bias-only":
        return make_scheme(graph, layers, {}, name=name, **kw)
    if name == "classifier-only":
        return make_scheme(graph, layers[-1:], {layers[-1]: 1.0}, name=name, **kw)
    m = re.fullmatch(r"last-k:(\d+)", name)
    if m:
        k = int(m.group(1))
        if not 1 <= k <= len(layers):
            raise SchemeError(f"preset {name}: k must be in [1, {len(layers)}] (the model has {len(layers)} layers)")
        chosen = layers[-k:]
        return make_scheme(graph, chosen, {n: 1.0 for n in chosen}, name=name, **kw)
    m = re.fullmatch(r"last-blocks:(\d+)", name)
    if m:
        n = int(m.group(1))
        blocks = sorted({b for b in (_block_of(x) for x in layers) if b is not None})
        if not 1 <= n <= len(blocks):
            raise SchemeError(f"preset {name}: n must be in [1, {len(blocks)}] (the model has {len(blocks)} "
                              "blocks named blocks.<i>.*)")
        keep = set(blocks[-n:])
        chosen = [x for x in layers if _block_of(x) in keep] + [layers[-1]]
        return make_scheme(graph, chosen, {x: 1.0 for x in chosen}, name=name, **kw)
    if "/" in name:
        model, budget = name.split("/", 1)
        if model in PUBLISHED and budget in PUBLISHED[model]:
            return _published(model, budget, graph, **kw)
    raise SchemeError(f"unknown scheme preset {name!r}; choose from {', '.join(preset_names())} or give a scheme "
                      "JSON file")


def load_scheme(arg: str, graph: Graph, **kw) -> UpdateScheme:
    """A preset name or a scheme JSON file, checked against ``graph``."""
    path = Path(arg)
    if arg.endswith(".json") or path.exists():
        return check_scheme(UpdateScheme.load(path), graph)
    return preset(arg, graph, **kw)
