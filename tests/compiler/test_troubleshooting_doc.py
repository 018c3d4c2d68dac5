"""docs/troubleshooting.md stays true of the code: its exit-code table is ExitCode, every exit code
it names exists, and every `distill` command and option it names is one the CLI has."""

from __future__ import annotations

import re

import typer
from typer.core import TyperGroup

from distill.compiler.cli import app
from distill.compiler.errors import ExitCode
from tests.conftest import REPO

DOC = (REPO / "docs" / "troubleshooting.md").read_text("utf-8")


def test_the_exit_code_table_is_exit_code() -> None:
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|", DOC, re.M)
    assert {name: int(code) for code, name in rows} == {member.name: member.value for member in ExitCode}


def test_every_exit_code_named_exists() -> None:
    named = {int(code) for code in re.findall(r"\bexits? (?:with )?(\d+)", DOC, re.I)}
    assert named and named <= {member.value for member in ExitCode}


def test_every_command_and_option_named_exists() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)  # an app of several commands
    commands = group.commands
    spans = [span.split() for span in re.findall(r"`(distill\s[^`]+)`", DOC)]
    assert len(spans) > 5
    for _, name, *rest in spans:
        assert name in commands, name
        options = {opt for param in commands[name].params for opt in param.opts}
        assert {word for word in rest if word.startswith("--")} <= options, (name, rest)
