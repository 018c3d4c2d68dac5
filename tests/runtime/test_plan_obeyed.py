"""Every field of the Plan is either obeyed by the runtime or is a report the plan prints: a
setting that is planned and then ignored (``teacher.dtype``, ``adamw_bf16`` and ``precision`` on
CPUs were) makes this test fail."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from distill.compiler.plan import Plan

REPO = Path(__file__).resolve().parents[2]
# What the plan reports rather than decides for the runtime: printed by `distill plan`
# (compiler/report.py), recorded in the lock and shown in the model card.
REPORTED = {
    "budget_bytes": "the budget the decisions fit",
    "budget_source": "where the budget came from",
    "models": "the resolved teacher and student, for the reader",
    "decisions": "each choice with its arithmetic",
    "phases": "predicted memory per phase",
    "examples": "data volume, estimated before the data exists",
    "tokens_per_epoch": "data volume, estimated",
    "optimizer_steps": "an estimate; the loop counts steps from the data it reads",
    "data_note": "how the volume was estimated",
    "estimates": "time estimates",
    "launch": "the command a scheduler runs on every machine (distill launch-cmd)",
}


def _code(folder: str) -> str:
    return "\n".join(path.read_text("utf-8") for path in (REPO / folder).rglob("*.py"))


def test_every_decided_field_is_read_by_the_runtime() -> None:
    runtime = _code("runtime")
    ignored = [f.name for f in dataclasses.fields(Plan)
               if f.name not in REPORTED and not re.search(rf"\bplan\.{f.name}\b", runtime)]
    assert not ignored, f"planned, never read by the runtime: {ignored}"


def test_every_reported_field_is_shown() -> None:
    fields = {f.name for f in dataclasses.fields(Plan)}
    assert set(REPORTED) <= fields, f"no such Plan fields: {sorted(set(REPORTED) - fields)}"
    shown = (REPO / "compiler" / "report.py").read_text("utf-8")
    missing = [name for name in REPORTED if not re.search(rf"\bplan\.{name}\b", shown)]
    assert not missing, f"reported fields distill plan does not print: {missing}"
