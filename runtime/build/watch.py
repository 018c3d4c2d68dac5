"""What a person watching ``distill build`` sees: each stage announced with what it will do, its
outcome (cached, done, stopped early, resumed), where an interrupted build stopped and how to go
on, and at the end a table of the models' quality, size and speed with the paths to use them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from distill.compiler.console import Bars, format_seconds
from distill.compiler.records.evaluation import Evaluation
from distill.compiler.records.report import Report
from distill.runtime.build.graph import Outcome, Stage

# Columns of the closing table, in order, where at least one model has the metric.
SUMMARY_METRICS = ("perplexity", "token_f1", "f1", "exact_match", "rouge_l")


@dataclass
class BuildWatcher:
    """The ``Watch`` callbacks of the CLI's build, and the lines they print on ``console``."""

    console: Console
    bars: Bars
    current: str | None = None
    started: float = 0.0
    done: list[str] = field(default_factory=list)

    def starting(self, stage: Stage, resumed: bool) -> None:
        self.current, self.started = stage.name, time.monotonic()
        about = stage.about()
        resuming = " (resuming: an interrupted run left its work here)" if resumed else ""
        self.console.print(f"{stage.name}: {about}{resuming}" if about else f"{stage.name}{resuming}", markup=False)

    def finished(self, outcome: Outcome) -> None:
        self.bars.clear()
        self.current = None
        self.done.append(outcome.name)
        state = "cached" if outcome.cached else f"done in {format_seconds(outcome.seconds)}"
        if outcome.changed:
            state += f" (ran again: {', '.join(outcome.changed[:3])} changed since it was built)"
        if not outcome.cached:
            state += training_note(outcome.summary)
        self.console.print(f"  {outcome.name}: {state}", markup=False)
        for warning in outcome.summary.get("warnings") or []:  # said again when cached: still true
            self.console.print(f"  {outcome.name}: warning: {warning}", markup=False)

    def interrupted(self, distillfile: Path) -> str:
        where = (f"in the {self.current} stage after {format_seconds(time.monotonic() - self.started)}"
                 if self.current else "between stages")
        kept = f"; finished and cached: {', '.join(self.done)}" if self.done else ""
        going_on = " (training goes on from its last checkpoint)" if self.current == "train" else ""
        return (f"interrupted {where}{kept}.\n"
                f"  resume: distill build {distillfile}{going_on}")

    def print_summary(self, console: Console, dist: Path, report: Report) -> None:
        if report.evaluation is not None and report.evaluation.models:
            console.print(summary_table(report.evaluation))
        console.print(f"built {dist}", markup=False)
        console.print(f"  model card: {dist / 'README.md'}", markup=False)
        for artifact in report.artifacts:
            console.print(f"  {artifact.kind}: {dist / artifact.path}", markup=False)
        chat = next((a for a in report.artifacts if a.kind == "gguf"), None)
        if chat is not None:
            console.print(f"  try it: distill chat {dist / chat.path}", markup=False)


def training_note(summary: dict[str, Any]) -> str:
    """``, resumed from step 30`` and/or ``; stopped early at step 32 of 80 ...`` for a train stage."""
    note = f", resumed from step {summary['resumed_from']}" if summary.get("resumed_from") else ""
    if summary.get("stopped_early"):
        note += (f"; stopped early at step {summary.get('steps')} of {summary.get('total_steps')}: the validation "
                 "loss stopped improving, the best step's weights are kept")
    return note


def summary_table(evaluation: Evaluation) -> Table:
    """Model, its quality metrics, retention against the teacher, size and ms per token."""
    from distill.runtime.build.report import fmt_metric

    models = evaluation.models
    shown = [m for m in SUMMARY_METRICS if any(m in x.metrics for x in models)]
    retention = evaluation.retention
    table = Table("model", *shown, "retention", "size (MiB)", "ms/token", title="evaluation on the held-out split")
    for model in models:
        metrics = model.metrics
        kept = retention.get(model.name) or {}
        size, latency = model.size_bytes, metrics.get("latency_ms")
        table.add_row(model.name, *[fmt_metric(m, metrics.get(m)) for m in shown],
                      ", ".join(f"{k} {v:.2f}" for k, v in sorted(kept.items())) or "-",
                      f"{size / 2**20:.1f}" if size is not None else "-",
                      f"{latency:.1f}" if latency is not None else "-")
    return table

