"""Gates: pass and fail messages with value vs threshold and model, unmeasured metrics fail."""

from __future__ import annotations

from dataclasses import replace

import pytest

from distill.compiler.errors import ExitCode
from distill.compiler.spec import Gates
from distill.runtime.evaluate import GateFailed, check_gates, enforce_gates
from tests.records import evaluation, model

EVALUATION = evaluation(
    [model("teacher", {"perplexity": 10.0, "token_f1": 0.5}, size_bytes=4000),
     model("student", {"perplexity": 12.5, "token_f1": 0.45, "latency_ms": 3.0}, size_bytes=1000),
     model("gguf:Q4_K_M", {"perplexity": 14.0, "token_f1": 0.30}, size_bytes=300)],
    {"student": {"perplexity": 0.8, "token_f1": 0.9}, "gguf:Q4_K_M": {"perplexity": 10 / 14, "token_f1": 0.6}})


def _by(results, gate: str, model: str):
    return next(r for r in results if r.gate == gate and r.model == model)


def test_student_gates_pass_when_nothing_is_deployed() -> None:
    results = check_gates(EVALUATION, Gates(min_retention=0.75, max_size=2000, max_perplexity=13.0,
                                            min_token_f1=0.4, max_latency_ms=5.0), deployed=[])
    assert {r.model for r in results} == {"student"} and all(r.passed for r in results)
    assert _by(results, "min_retention", "student").value == 0.8  # the worst ratio
    enforce_gates(results)  # no raise


def test_failures_name_value_threshold_and_model() -> None:
    results = check_gates(EVALUATION, Gates(min_retention=0.75, max_size=256), deployed=["gguf:Q4_K_M"])
    retention, size = _by(results, "min_retention", "gguf:Q4_K_M"), _by(results, "max_size", "gguf:Q4_K_M")
    assert not retention.passed and retention.value == 0.6 and retention.threshold == 0.75
    assert retention.message == "min_retention: gguf:Q4_K_M retains 0.6000 of the reference's token_f1 < 0.7500"
    assert size.message == "max_size: gguf:Q4_K_M size 300 bytes > 256 bytes"
    with pytest.raises(GateFailed) as error:
        enforce_gates(results)
    assert error.value.exit_code == ExitCode.GATE_FAILED
    assert error.value.message.startswith("2 quality gates failed: min_retention: gguf:Q4_K_M retains 0.6000")
    assert "max_size: gguf:Q4_K_M size 300 bytes > 256 bytes" in error.value.message


def test_unmeasured_metric_is_a_failure() -> None:
    results = check_gates(EVALUATION, Gates(min_rouge_l=0.1, max_latency_ms=5.0), deployed=["gguf:Q4_K_M"])
    assert [r.passed for r in results] == [False, False]
    assert all(r.value is None for r in results)
    assert results[0].message == "min_rouge_l: rouge_l of gguf:Q4_K_M was not measured (add it to eval.metrics)"
    with pytest.raises(GateFailed, match="max_latency_ms: latency_ms of gguf:Q4_K_M was not measured"):
        enforce_gates(results)


def test_missing_model_and_missing_retention_fail() -> None:
    results = check_gates(replace(EVALUATION, retention={}), Gates(min_retention=0.5),
                          deployed=["student", "onnx:int8"])
    student, onnx = _by(results, "min_retention", "student"), _by(results, "min_retention", "onnx:int8")
    assert not student.passed and "no retention measured for student" in student.message
    assert not onnx.passed and "model 'onnx:int8' was not evaluated" in onnx.message


def test_every_deployed_artifact_is_gated() -> None:
    results = check_gates(EVALUATION, Gates(max_perplexity=13.0), deployed=["student", "gguf:Q4_K_M"])
    assert [(r.model, r.passed) for r in results] == [("student", True), ("gguf:Q4_K_M", False)]
    assert results[1].message == "max_perplexity: gguf:Q4_K_M perplexity 14 > 13"
