"""docs/cli.md is generated from the parsers; it must match them, and every verb documents itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from microtrain.cli import VERB_MODULES, build_parser, main

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("verb", VERB_MODULES)
def test_every_verb_has_help_and_json(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: microtrain {verb}" in text
    assert "--json" in text


def test_unknown_verb_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["no-such-verb"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
