"""``distill plan`` output: the plan as text, every number with where it came from."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from distill.compiler.plan import Plan
from distill.compiler.units import format_size


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_plan(console: Console, plan: Plan, title: str) -> None:
    console.print(Text(title, style="bold"))
    console.print(f"  device  {plan.device} x {plan.processes}, budget {format_size(plan.budget_bytes)} "
                  f"({plan.budget_source})")
    for model in plan.models:
        revision = f" @ {model.revision[:12]}" if model.revision else ""
        trainable = f", trainable {model.trainable:,}" if model.role == "student" else ""
        console.print(f"  {model.role:<7} {model.ref}{revision}: {model.family}, {model.params:,} params{trainable}")
    console.print(f"  data    {plan.examples:,} examples, ~{plan.tokens_per_epoch:,} tokens per epoch, "
                  f"{plan.optimizer_steps:,} optimizer steps ({plan.data_note})")
    decisions = Table(title="Decisions", show_edge=False, title_justify="left", expand=False)
    for column in ("setting", "chosen", "because"):
        decisions.add_column(column, overflow="fold")
    for decision in plan.decisions:
        decisions.add_row(decision.name, decision.value, decision.why)
    console.print(decisions)
    memory = Table(title="Predicted peak memory per phase", show_edge=False, title_justify="left")
    for column in ("phase", "peak", "made of"):
        memory.add_column(column, overflow="fold")
    for phase in plan.phases:
        parts = ", ".join(f"{t.name} {format_size(t.bytes)}" for t in phase.terms if t.bytes)
        style = "bold" if phase is plan.peak else ""
        memory.add_row(Text(phase.phase, style=style), Text(format_size(phase.bytes), style=style), parts)
    console.print(memory)
    console.print(f"  peak {format_size(plan.peak.bytes)} in {plan.peak.phase}: "
                  f"{plan.peak.bytes / plan.budget_bytes:.0%} of the budget")
    if plan.launch is not None:
        from distill.compiler.launch import shell_line

        console.print(f"  launch  {shell_line(plan.launch)}", soft_wrap=True, markup=False, highlight=False)
    for estimate in plan.estimates:
        when = f"~{_duration(estimate.seconds)}" if estimate.seconds is not None else "no estimate"
        console.print(f"  estimate {estimate.stage}: {when} ({estimate.flops:.3g} FLOPs = {estimate.why})")


def past_peaks(path: Path) -> list[str]:
    """How the last build's plan held on the machine it ran on: per stage that used a GPU, the
    CUDA allocator's reserved peak against that build's planned peak (``report.json``'s
    ``device_peaks``). Nothing when there is no such report; one line saying why when it cannot
    be read (the plan itself does not depend on it)."""
    from distill.compiler.records.record import RecordError
    from distill.compiler.records.report import Report

    if not path.is_file():
        return []
    try:
        report = Report.read(path)
    except RecordError as error:
        return [f"  last build: {error.message}; no past peaks shown"]
    where = report.lock.settings.get("budget_source", "its machine")
    lines = []
    for stage, peak in sorted(report.device_peaks.items()):
        planned = (f" vs planned {format_size(peak.predicted)} ({peak.reserved_over_predicted:.2f} x)"
                   if peak.predicted is not None and peak.reserved_over_predicted is not None else "")
        lines.append(f"  last build {stage}: CUDA reserved {format_size(peak.reserved)}, allocated "
                     f"{format_size(peak.allocated)}{planned} ({where})")
    return lines
