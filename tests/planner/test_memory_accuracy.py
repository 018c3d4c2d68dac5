"""A subset of benchmarks/planner_accuracy.py: predicted peaks within 3% of traced CPU steps (the
training loop's own step)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import planner_accuracy

CASES = {case.name: case for case in planner_accuracy._cases()}


@pytest.mark.parametrize("name", planner_accuracy.QUICK)
def test_predicted_peak_is_within_bound_of_measured(name: str) -> None:
    predicted, measured, _ = planner_accuracy.compare(CASES[name])
    assert abs(predicted - measured) <= planner_accuracy.BOUND * measured, (predicted, measured)


def test_the_benchmark_covers_the_matrix_the_issue_asks_for() -> None:
    steps = [case.step for case in CASES.values()]
    assert len(CASES) >= 16
    assert {c.config["model_type"] for c in CASES.values()} >= {"llama", "qwen2", "qwen3", "gpt2", "gemma2",
                                                                "gemma3_text", "phi3", "bert"}
    assert {s.adapter for s in steps} == {"none", "lora", "qlora"}
    assert {s.checkpointing for s in steps} == {True, False}
    assert {s.kd for s in steps} == {"none", "online"}
    assert {s.accumulation for s in steps} == {1, 2}
    assert {s.lora_dropout > 0 for s in steps if s.adapter != "none"} == {True, False}
    assert len({s.micro_batch for s in steps}) >= 3 and len({s.seq_len for s in steps}) >= 3
