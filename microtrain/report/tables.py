"""A small text-table formatter for reports and CLI output (no dependencies).

    cols = [Column("layer"), Column("MACs", align=">", fmt=fmt_int)]
    print(render(cols, [["conv", 1234567], ["fc", 10]], totals=["total", 1234577]))

    layer       MACs
    -----  ---------
    conv   1,234,567
    fc            10
    -----  ---------
    total  1,234,577

Cells are formatted by the column's ``fmt`` (``str`` by default; ``None`` prints as
empty), padded to the widest cell of the column, left (``"<"``) or right (``">"``)
aligned; numbers are usually right aligned. Lines carry no trailing blanks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


def fmt_int(v: Any) -> str:
    """1234567 -> '1,234,567'."""
    return f"{int(v):,}"


def fmt_kb(v: Any, digits: int = 1) -> str:
    """Bytes as KB (1 KB = 1024 bytes, the project's convention): 2560 -> '2.5'."""
    return f"{v / 1024:.{digits}f}"


def fmt_millions(v: Any, digits: int = 2) -> str:
    """12345678 -> '12.35M'."""
    return f"{v / 1e6:.{digits}f}M"


@dataclass(frozen=True)
class Column:
    header: str
    align: str = "<"
    fmt: Callable[[Any], str] = str

    def __post_init__(self) -> None:
        if self.align not in ("<", ">"):
            raise ValueError(f"column {self.header!r}: align must be '<' or '>', not {self.align!r}")

    def cell(self, value: Any) -> str:
        return "" if value is None else self.fmt(value)


def render(columns: Sequence[Column], rows: Sequence[Sequence[Any]], totals: Sequence[Any] | None = None,
           title: str | None = None, gap: int = 2) -> str:
    """The table as text: optional title, header, rule, rows, and a totals row under a rule."""
    for i, row in enumerate(list(rows) + ([totals] if totals is not None else [])):
        if len(row) != len(columns):
            raise ValueError(f"row {i} has {len(row)} cells for {len(columns)} columns")
    body = [[c.cell(v) for c, v in zip(columns, row, strict=True)] for row in rows]
    foot = [c.cell(v) for c, v in zip(columns, totals, strict=True)] if totals is not None else None
    widths = [len(c.header) for c in columns]
    for cells in body + ([foot] if foot else []):
        widths = [max(w, len(s)) for w, s in zip(widths, cells, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [s.ljust(w) if c.align == "<" else s.rjust(w) for c, s, w in zip(columns, cells, widths, strict=True)]
        return (" " * gap).join(parts).rstrip()

    rule = (" " * gap).join("-" * w for w in widths)
    out = [title] if title else []
    out += [line([c.header for c in columns]), rule]
    out += [line(cells) for cells in body]
    if foot is not None:
        out += [rule, line(foot)]
    return "\n".join(out)
