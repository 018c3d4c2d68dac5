"""Broken Distillfiles under cases/, each with the exact text and exit code `distill validate`
gives for it. Regenerate after an intended wording change with DISTILL_UPDATE_GOLDEN=1, then read
the diff."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from distill.compiler.cli import main
from tests.conftest import REPO

CASES = Path(__file__).parent / "cases"
LOCATED = re.compile(r"^tests/compiler/cases/[\w.-]+\.yaml:\d+:\d+: (error|warning): ")


def _run(case: Path, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["validate", str(case.relative_to(REPO))])
    return f"exit {code}\n{capsys.readouterr().err}"


@pytest.mark.parametrize("case", sorted(CASES.glob("*.yaml")), ids=lambda p: p.stem)
def test_error_text_matches_golden(case: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    actual = _run(case, capsys)
    golden = case.with_suffix(".expected")
    if os.environ.get("DISTILL_UPDATE_GOLDEN") == "1":
        golden.write_text(actual)
    assert actual == golden.read_text()


@pytest.mark.parametrize("case", sorted(CASES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_error_is_located_and_exit_is_1(case: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    first, *lines = _run(case, capsys).splitlines()
    assert first == "exit 1"
    messages = [line for line in lines if not line.startswith("  hint: ")][:-1]
    assert messages, "an invalid file must get at least one message"
    assert all(LOCATED.match(line) for line in messages), messages
    assert re.fullmatch(r"\d+ errors?", lines[-1])


def test_there_are_at_least_30_cases() -> None:
    assert len(list(CASES.glob("*.yaml"))) >= 30
