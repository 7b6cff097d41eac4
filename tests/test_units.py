"""One size parser for every budget and memory size (``microtrain.units.parse_size``): the CLI's
budgets and the Cortex-M7 linker read the same text as the same number of bytes, and refuse
zero, negative sizes, fractions of a byte and garbage with a message naming what was wrong."""

from __future__ import annotations

import pytest

from microtrain.cli import main
from microtrain.errors import UserError
from microtrain.targets.cortex_m7 import linker
from microtrain.units import parse_size


@pytest.mark.parametrize("text,expected", [("256KB", 262144), ("1MB", 1048576), ("300000", 300000), ("64k", 65536),
                                           ("1.5MB", 1572864), (4096, 4096), ("2 MiB", 2097152), ("160 kb", 163840)])
def test_sizes(text, expected):
    assert parse_size(text) == expected
    assert linker.parse_size is parse_size  # the linker reads budgets with the same parser


@pytest.mark.parametrize("text,message", [("0", "more than 0"), ("0KB", "more than 0"), (0, "more than 0"),
                                          (-5, "more than 0"), ("-5KB", "cannot read"), ("1.3", "whole number"),
                                          ("lots", "cannot read"), ("", "cannot read"), ("12 parsecs", "cannot read")])
def test_refused(text, message):
    with pytest.raises(UserError, match=message):
        parse_size(text, "budget")


def test_compile_budget_refused_in_one_line(tmp_path, capsys):
    assert main(["compile", "default", "--scheme", "last-k:1", "--out", str(tmp_path / "p"), "--budget", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "budget '0.5' is not a whole number of bytes" in err and "Traceback" not in err
