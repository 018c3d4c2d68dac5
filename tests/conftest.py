"""Shared fixtures: a minimal valid Distillfile and a project folder to write variants into."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
# Real model configs (no weights), copied into the repo: a clone has everything its tests need.
FIXTURE_CONFIGS = REPO / "tests" / "fixtures" / "configs"
# Every example Distillfile that validates in a clean checkout. The quickstart's teacher is the
# SmolLM2 GGUF that its build.sh links beside it from the environment scripts/setup.sh made;
# tests/e2e/test_quickstart.py links it and builds.
QUICKSTART = REPO / "examples" / "quickstart" / "Distillfile"
EXAMPLES = sorted(p for p in (REPO / "examples").glob("*/*Distillfile") if p != QUICKSTART)

MIN_SPEC: dict[str, Any] = {
    "version": 1,
    "name": "tiny",
    "sources": [{"text": "docs/*.md"}],
    "student": {"model": "org/student", "revision": "0123abcd"},
    "loss": {"mask": "all"},
}


def with_overrides(spec: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``spec`` with dotted keys set (``{"student.adapter.r": 0}``); a value of
    ``DELETE`` removes the key."""
    result = copy.deepcopy(spec)
    for dotted, value in overrides.items():
        *parents, last = dotted.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return result


DELETE = object()


@pytest.fixture
def min_spec() -> dict[str, Any]:
    return copy.deepcopy(MIN_SPEC)


@pytest.fixture
def project(tmp_path: Path) -> Callable[[dict[str, Any] | str], Path]:
    """A folder with docs/guide.md; call it with data or YAML text to write its Distillfile."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\nThe pump runs 20 minutes.\n")

    def write(content: dict[str, Any] | str) -> Path:
        path = tmp_path / "Distillfile"
        if isinstance(content, str):
            path.write_text(content)
        else:
            with path.open("w") as handle:
                YAML(typ="safe", pure=True).dump(content, handle)
        return path

    return write
