"""Every per-op rule table covers every op of the enum, or says which ops it exempts.

The op registry (``microtrain/ir/registry.py``) names the one table of each kind of rule
(shape, buffer, eval, batch, sim, vjp, inplace, emit, cost). The coverage check runs in a
fresh interpreter that imports only ``microtrain.ir`` and loads each table through the
registry, so a rule that some module would add to a table as a side effect of being imported
cannot make it pass: what the registry loads is what every executor, pass and emitter sees.

* Ops a table deliberately does not handle are listed in a module-level frozenset named
  ``<TABLE>_EXEMPT`` next to it (e.g. ``VJP_RULES_EXEMPT``; property groups of ``ir/ops.py``
  keep it short). An op may not be both ruled and exempt.
* A per-op table (a module-level ``*_RULES`` dict keyed by ``Op``) that the registry does not
  name must be a part of one it names (the same rules), so no kind of rule hides elsewhere.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from functools import cache

import pytest

import microtrain
from microtrain.ir import registry
from microtrain.ir.ops import Op

PROBE = r"""
import json, sys
import microtrain.ir
from microtrain.ir import registry
from microtrain.ir.ops import Op

alone = sorted(m for m in sys.modules if m.startswith("microtrain"))
shape_missing = [op.name for op in Op if op not in registry.SHAPE_RULES]
kinds = {}
for k in registry.RULE_KINDS:
    table, exempt = registry.rule_table(k.name), registry.exempt_ops(k.name)
    kinds[k.name] = {
        "where": f"{k.module}.{k.table}",
        "missing": [op.name for op in Op if op not in table and op not in exempt],
        "both": [op.name for op in Op if op in table and op in exempt],
        "bad_keys": [repr(key) for key in (*table, *exempt) if not isinstance(key, Op)],
    }
print(json.dumps({"alone": alone, "shape_missing": shape_missing, "kinds": kinds}))
"""


@cache
def probe() -> dict:
    """Run the coverage probe once, in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_ir_alone_has_every_shape_rule():
    p = probe()
    others = [m for m in p["alone"] if m != "microtrain" and not m.startswith("microtrain.ir")]
    assert not others, f"importing microtrain.ir imported {others}"
    assert not p["shape_missing"], f"ops without a shape rule in ir/registry.py: {p['shape_missing']}"


@pytest.mark.parametrize("kind", [k.name for k in registry.RULE_KINDS])
def test_kind_covers_every_op(kind: str):
    k = probe()["kinds"][kind]
    assert not k["bad_keys"], f"{k['where']}: keys that are not Op members: {k['bad_keys']}"
    assert not k["both"], f"{k['where']}: ops both ruled and exempt: {k['both']}"
    assert not k["missing"], (f"{k['where']} has no rule for {k['missing']}: add a rule, or list the op in the "
                              f"table's _EXEMPT frozenset if it deliberately does not apply (ir/registry.py)")


def _op_tables() -> tuple[list[tuple[str, str, dict]], list[str]]:
    found, errors = [], []
    for info in pkgutil.walk_packages(microtrain.__path__, prefix="microtrain."):
        try:
            mod = importlib.import_module(info.name)
        except Exception as e:  # noqa: BLE001 - reported as a test failure below
            errors.append(f"{info.name}: {type(e).__name__}: {e}")
            continue
        for name, value in vars(mod).items():
            if (name.endswith("_RULES") and isinstance(value, dict) and value
                    and all(isinstance(key, Op) for key in value)):
                found.append((info.name, name, value))
    return found, errors


def test_every_op_table_is_in_the_registry():
    tables, errors = _op_tables()
    assert not errors, "\n".join(errors)  # a module that cannot be imported could hide a table
    registered = [registry.rule_table(k.name) for k in registry.RULE_KINDS]
    stray = [f"{mod}.{name}" for mod, name, table in tables
             if not any(all(full.get(op) is rule for op, rule in table.items()) for full in registered)]
    assert not stray, f"per-op tables the registry does not name (add a RuleKind to ir/registry.py): {stray}"
