"""The fuzz benchmark at a CI size: mutated Distillfiles through ``distill validate`` and mutated
sources through ``distill extract``, in-process: no traceback, no unlocated error, no run over
5 s. ``benchmarks/fuzz.py`` runs the full 10,000 + 200 (its note in issue 16 has the result)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_mutated_distillfiles_and_sources_fail_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("fuzz", REPO / "benchmarks" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    sys.modules["fuzz"] = fuzz  # its dataclasses look their module up there
    spec.loader.exec_module(fuzz)
    passed = fuzz.run(files=600, sources=40, seed=1)
    printed = capsys.readouterr().out
    assert "distillfiles: 600 runs" in printed and "sources: 40 runs" in printed
    assert passed, printed
