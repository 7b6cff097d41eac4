"""Every per-op rule table covers every op of the enum, or says which ops it exempts.

The convention (STYLE.md: one op enum, per-op behaviour in rule tables):

* A rule table is a module-level dict under ``microtrain/`` whose name ends in ``_RULES``
  and whose keys are ``Op`` members (``SHAPE_RULES`` in ir/verify.py, ``EVAL_RULES`` in
  interp/reference.py, ``VJP_RULES``, emit and cost tables, ...). They are discovered by
  importing every module of the package, so a new table is checked without editing this
  test, and ops appended to ``Op`` are checked against every table at once.
* Ops a table deliberately does not handle are listed in a module-level frozenset named
  ``<TABLE>_EXEMPT`` next to it (e.g. ``VJP_RULES_EXEMPT = frozenset({Op.UPDATE_WEIGHT})``);
  the short form without ``_RULES`` (``VJP_EXEMPT``, ``SIM_EXEMPT``) is accepted too.
  Property groups of ``ir/ops.py`` make this short: ``VJP_RULES_EXEMPT = TRAINING_OPS``.
* Coverage groups: a table is checked on its own, except that tables may be split over
  several modules and checked as a union:
    - every ``*EVAL_RULES`` table in ``microtrain.interp`` forms the group "interp" (the
      forward ops in ``interp/reference.py`` ``EVAL_RULES``, the training ops in
      ``interp/training.py`` ``TRAINING_EVAL_RULES``); other interp tables (e.g. the batched
      twin's ``BATCH_RULES``) are executors of their own and are checked on their own;
    - any other table joins a named group by defining ``<TABLE>_GROUP = "name"`` next to it
      (e.g. emit tables spread over several codegen modules). A table's default group is
      ``"<module>.<TABLE>"``, so a partial table can join an existing one: the training
      ops' shape rules registered into ``SHAPE_RULES`` declare
      ``TRAINING_SHAPE_RULES_GROUP = "microtrain.ir.verify.SHAPE_RULES"``.
  A group covers an op when some table in it has a rule for it or exempts it.
* Rules registered at import time (``ir.verify.register_shape_rule``) count: every module is
  imported before the check.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from dataclasses import dataclass

import pytest

import microtrain
from microtrain.ir.ops import Op


@dataclass
class Table:
    module: str
    name: str
    rules: dict
    exempt: frozenset
    group: str


def _import_all() -> tuple[list, list[str]]:
    modules, errors = [], []
    for info in pkgutil.walk_packages(microtrain.__path__, prefix="microtrain."):
        try:
            modules.append(importlib.import_module(info.name))
        except Exception as e:  # noqa: BLE001 - reported as a test failure below
            errors.append(f"{info.name}: {type(e).__name__}: {e}")
    return modules, errors


def _is_op_table(value: object) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(k, Op) for k in value)


def _side(module_vars: dict, table: str, suffix: str):
    """``<TABLE>_<SUFFIX>`` or the short ``<PREFIX>_<SUFFIX>`` (VJP_RULES -> VJP_EXEMPT), if defined."""
    for key in (f"{table}_{suffix}", f"{table.removesuffix('_RULES')}_{suffix}"):
        if key in module_vars:
            return module_vars[key]
    return None


def _home(value: dict, name: str, modules: list) -> str:
    """The module that defines a table (others may import it under the same name)."""
    holders = [m.__name__ for m in modules if vars(m).get(name) is value]
    with_exempt = [h for h in holders if _side(vars(importlib.import_module(h)), name, "EXEMPT") is not None]
    if with_exempt:
        return with_exempt[0]
    rule_modules = Counter(getattr(r, "__module__", None) for r in value.values())
    return max(holders, key=lambda h: rule_modules.get(h, 0))


def discover_tables() -> tuple[list[Table], list[str]]:
    modules, errors = _import_all()
    tables: dict[tuple[str, str], Table] = {}
    for mod in modules:
        for name, value in vars(mod).items():
            if not name.endswith("_RULES") or not _is_op_table(value):
                continue
            home = _home(value, name, modules)
            if (home, name) in tables:
                continue
            home_vars = vars(importlib.import_module(home))
            exempt = _side(home_vars, name, "EXEMPT") or frozenset()
            in_interp = home.startswith("microtrain.interp.") and name.endswith("EVAL_RULES")
            group = _side(home_vars, name, "GROUP") or ("interp" if in_interp else f"{home}.{name}")
            tables[(home, name)] = Table(home, name, value, frozenset(exempt), group)
    return list(tables.values()), errors


TABLES, IMPORT_ERRORS = discover_tables()


def test_every_module_imports():
    # A module that cannot be imported could hide a table (and is broken anyway).
    assert not IMPORT_ERRORS, "\n".join(IMPORT_ERRORS)


def test_core_tables_are_discovered():
    found = {(t.module, t.name) for t in TABLES}
    assert ("microtrain.ir.verify", "SHAPE_RULES") in found
    assert ("microtrain.interp.reference", "EVAL_RULES") in found


@pytest.mark.parametrize("table", TABLES, ids=lambda t: f"{t.module}.{t.name}")
def test_table_is_well_formed(table: Table):
    assert all(isinstance(op, Op) for op in table.exempt), f"{table.name}_EXEMPT must hold Op members"
    both = sorted(op.name for op in set(table.rules) & table.exempt)
    assert not both, f"{table.module}.{table.name}: ops both ruled and exempt: {both}"


def _groups() -> dict[str, list[Table]]:
    groups: dict[str, list[Table]] = {}
    for t in TABLES:
        groups.setdefault(t.group, []).append(t)
    return groups


@pytest.mark.parametrize("group", sorted(_groups()))
def test_group_covers_every_op(group: str):
    tables = _groups()[group]
    covered = set().union(*(set(t.rules) | t.exempt for t in tables))
    missing = [op.name for op in Op if op not in covered]
    names = ", ".join(f"{t.module}.{t.name}" for t in tables)
    assert not missing, (f"rule table(s) {names} have no rule for {missing}: add a rule, or list the op in "
                         f"the table's <TABLE>_EXEMPT frozenset if it deliberately does not apply")
