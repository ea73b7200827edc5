"""README example outputs stay true: every block marked ``<!-- example-output: ARGS -->`` is
compared with what ``aqr ARGS`` prints now (whitespace and wrapping aside; lines with ``...``
or a path, which differ by machine, are skipped)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.cli.app import app
from conftest import FIXTURES, ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
MARK = re.compile(r"<!-- example-output: (.+?) -->\n```\n(.*?)```", re.S)
EXAMPLES = MARK.findall(README)


def _norm(text: str) -> str:
    return " ".join(text.split())


def test_examples_are_marked():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("args, block", EXAMPLES, ids=[a for a, _ in EXAMPLES])
def test_example_output_matches_the_command(args, block):
    argv = args.format(fixtures=FIXTURES).split()
    res = CliRunner().invoke(app, argv, env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.stderr
    out = _norm(res.stdout)
    checked = 0
    for line in block.splitlines():
        if not line.strip() or line.startswith("$") or "..." in line or "/" in line:
            continue
        assert _norm(line) in out, line
        checked += 1
    assert checked >= 5
