"""Docs for every command (as sqlite-utils does): help text, an Example line, every option in
the README."""

from __future__ import annotations

import re

import pytest
import typer
from typer.core import TyperOption

import aqr_cli.cli.commands  # noqa: F401  (registers the commands)
from aqr_cli.cli.app import app
from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> dict:
    group = typer.main.get_command(app)
    return dict(group.commands)


def test_every_command_is_documented_in_the_readme():
    names = list(_commands())
    assert {"inspect-checkpoint", "render-weights", "compare-modes"} <= set(names)
    for name in names:
        assert f"## `aqr {name}`" in README, name


@pytest.mark.parametrize("name", sorted(_commands()))
def test_command_help_has_text_and_example(name):
    cmd = _commands()[name]
    assert cmd.help and len(cmd.help.split()) > 10, name
    examples = [line.strip() for line in cmd.help.splitlines() if line.strip().startswith("Example:")]
    assert examples and examples[0].startswith(f"Example: aqr {name} "), name


def _section(name: str) -> str:
    start = README.index(f"## `aqr {name}`")
    nxt = README.find("\n## ", start + 1)
    return README[start:nxt if nxt > 0 else None]


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_is_in_the_readme_section(name):
    """Each option is named in the command's README section (or in the section it defers to)."""
    cmd = _commands()[name]
    text = _section(name)
    for other in _commands():
        if other != name and f"flags of {other}" in text:
            text += _section(other)
    for param in cmd.params:
        if not isinstance(param, TyperOption) or param.hidden or "--help" in param.opts:
            continue
        for opt in param.opts:
            assert re.search(re.escape(opt) + r"(?![\w-])", text), (name, opt)


def test_ci_runs_exactly_the_readme_test_command():
    """`.ci/run` runs the README's "run the tests" command, so a step missing from the README
    (an install, the type check) fails CI too."""
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    test_cmd = next(b for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_cmd.strip() in ci.splitlines()
    assert "mypy" in test_cmd and "pip install torch==2.13.0" in test_cmd
