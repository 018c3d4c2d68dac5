"""The compiler's passes in order, for the CLI: compile -> resolve -> probe -> measure -> plan."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from distill.compiler.errors import SpecError
from distill.compiler.frontend import CompiledSpec, compile_file, diagnostics
from distill.compiler.hardware import ignored_declarations, probe_budget
from distill.compiler.model_checks import model_findings
from distill.compiler.plan import Plan
from distill.compiler.planner import make_plan
from distill.compiler.resolve import ResolvedModel, ResolveFailed, resolve_models
from distill.compiler.support import support_findings
from distill.compiler.volume import DataVolume, measure_volume, split_findings


@dataclass(frozen=True)
class Planned:
    compiled: CompiledSpec
    models: Mapping[str, ResolvedModel]
    volume: DataVolume
    plan: Plan


def compile_and_resolve(path: Path, offline: bool = False) -> tuple[CompiledSpec, dict[str, ResolvedModel]]:
    """The Spec and its models; resolution failures and models some part of distill cannot
    take (``compiler/support.py``) are located in the Distillfile."""
    compiled = compile_file(path)
    try:
        models = resolve_models(compiled.spec, compiled.root, offline)
    except ResolveFailed as failed:
        raise SpecError(diagnostics(compiled.document, failed.findings)) from None
    found = diagnostics(compiled.document, support_findings(compiled.spec, models)
                        + model_findings(compiled.spec, models))
    if any(d.severity == "error" for d in found):
        raise SpecError(found)
    return replace(compiled, warnings=(*compiled.warnings, *found)), models


def plan_file(path: Path, offline: bool = False) -> Planned:
    """Everything ``distill plan`` computes; hardware is probed here, at the edge."""
    compiled, models = compile_and_resolve(path, offline)
    budget = probe_budget(compiled.spec.hardware)
    ignored = diagnostics(compiled.document, ignored_declarations(compiled.spec.hardware, budget))
    compiled = replace(compiled, warnings=(*compiled.warnings, *ignored))
    volume = measure_volume(compiled.spec, compiled.root)
    split = diagnostics(compiled.document, split_findings(compiled.spec, volume))
    compiled = replace(compiled, warnings=(*compiled.warnings, *split))
    return Planned(compiled, models, volume, make_plan(compiled.spec, models, budget, volume))
