"""Quality gates over ``evaluation.json``: each gate applies to every deployed artifact (or to the
student when nothing is deployed). A gate whose metric was not measured fails, naming what is
missing: a gate that cannot be checked must not pass silently."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields

from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.records.evaluation import Evaluation
from distill.compiler.records.report import GateResult
from distill.compiler.spec import Gates

# gate -> (metric key in a model's "metrics", "min" or "max", how to show a value)
_METRIC_GATES: dict[str, tuple[str, str, str]] = {
    "max_perplexity": ("perplexity", "max", ".4g"),
    "min_exact_match": ("exact_match", "min", ".4f"),
    "min_f1": ("f1", "min", ".4f"),
    "min_token_f1": ("token_f1", "min", ".4f"),
    "min_rouge_l": ("rouge_l", "min", ".4f"),
    "max_latency_ms": ("latency_ms", "max", ".4g"),
}


class GateFailed(DistillError):
    exit_code = ExitCode.GATE_FAILED


def check_gates(evaluation: Evaluation, gates: Gates, deployed: Sequence[str]) -> list[GateResult]:
    """Every set gate on every model in ``deployed`` (``["student"]`` when empty), in gate order."""
    models = {m.name: m for m in evaluation.models}
    retention = evaluation.retention
    results = []
    for gate in (f.name for f in fields(Gates)):
        threshold = getattr(gates, gate)
        if threshold is None:
            continue
        for name in list(deployed) or ["student"]:
            model = models.get(name)
            if model is None:
                results.append(GateResult(gate, name, None, threshold, False,
                                          f"{gate}: model {name!r} was not evaluated (evaluated: "
                                          f"{', '.join(models) or 'none'})"))
            elif gate == "min_retention":
                results.append(_retention_gate(name, retention.get(name) or {}, threshold))
            elif gate == "max_size":
                results.append(_compare(gate, name, model.size_bytes, threshold, "max", "size", ",d", " bytes"))
            else:
                metric, direction, shown = _METRIC_GATES[gate]
                results.append(_compare(gate, name, model.metrics.get(metric), threshold, direction,
                                        metric, shown, " ms/token" if metric == "latency_ms" else ""))
    return results


def _compare(gate: str, model: str, value: float | None, threshold: float, direction: str, metric: str,
             shown: str, unit: str) -> GateResult:
    if value is None:
        return GateResult(gate, model, None, threshold, False,
                          f"{gate}: {metric} of {model} was not measured (add it to eval.metrics)")
    passed = value <= threshold if direction == "max" else value >= threshold
    relation = ("<=" if passed else ">") if direction == "max" else (">=" if passed else "<")
    text = f"{gate}: {model} {metric} {format(value, shown)}{unit} {relation} {format(threshold, shown)}{unit}"
    return GateResult(gate, model, value, threshold, passed, text)


def _retention_gate(model: str, ratios: Mapping[str, float], threshold: float) -> GateResult:
    """Every retention ratio of the model must reach the threshold; the worst one is reported."""
    if not ratios:
        return GateResult("min_retention", model, None, threshold, False,
                          f"min_retention: no retention measured for {model} (needs a teacher, or the "
                          f"student for artifacts, scored on a shared metric)")
    metric, worst = min(ratios.items(), key=lambda item: item[1])
    passed = worst >= threshold
    return GateResult("min_retention", model, worst, threshold, passed,
                      f"min_retention: {model} retains {worst:.4f} of the reference's {metric} "
                      f"{'>=' if passed else '<'} {threshold:.4f}")


def enforce_gates(results: Sequence[GateResult]) -> None:
    """Raise ``GateFailed`` naming every failed gate (value vs threshold and the model)."""
    failed = [r for r in results if not r.passed]
    if failed:
        count = len(failed)
        raise GateFailed(f"{count} quality gate{'s' * (count != 1)} failed: " + "; ".join(r.message for r in failed),
                         hint="see evaluation.json for every metric; relax eval.gates or improve the student")
