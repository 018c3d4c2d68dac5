"""The loss curve beside the metrics, each curve labelled with what it measures, and the step whose
weights were kept. matplotlib's Agg canvas: no display needed.

What ``metrics.jsonl`` holds (``loop.py``): per optimizer step ``loss``, the objective (the
Distillfile's weighted sum of the CE, KL and hidden-state terms), and ``ce``, the unweighted
cross-entropy (when the CE term is on); per evaluation ``val_loss``, the unweighted cross-entropy
on the validation split, no teacher involved. Train CE and validation CE are the same quantity and
share the left axis; the objective is another quantity and gets its own right axis, unless it is
the CE itself (CE alone, at weight 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.compiler.fsutil import write_atomic_with
from distill.compiler.records.record import read_lines

# A line of metrics.jsonl: the step and what was measured at it (loss, ce, kl, hidden, lr, seconds;
# or val_loss), by name. Integers stay integers (the step).
MetricRecord = dict[str, int | float]

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Causal LMs average per learned token, extractive QA per example (start and end CE halved).
CE_AXIS = "cross-entropy (nats, mean)"


@dataclass(frozen=True)
class Kept:
    """The step whose weights training kept: the best validation step when early stopping
    returned to it, else the last step."""

    step: int
    early_stopped: bool

    @property
    def label(self) -> str:
        why = "early stopping: best validation CE" if self.early_stopped else "the last step"
        return f"kept weights: step {self.step} ({why})"


def kept_step(checkpoints: Path) -> Kept | None:
    """What the newest checkpoint's loop state says was kept; None without one (an FSDP run
    writes no checkpoints). The loop saves a checkpoint after its last step, so the newest holds
    the final early-stopping state: ``best_val`` is the very float of its evaluation in ``evals``."""
    from distill.runtime.train.checkpoint import LOOP_STATE, LoopState, complete

    found = complete(checkpoints)
    if not found:
        return None
    state = LoopState.read(found[-1] / LOOP_STATE)
    if not state.stopped:
        return Kept(state.step, False)
    # the first evaluation at the best value: a later equal one did not improve on it
    best = next(e["step"] for e in state.evals if e["val_loss"] == state.best_val)
    return Kept(int(best), True)


def read_records(metrics: Path) -> list[MetricRecord]:
    """metrics.jsonl's records; none when the file is missing."""
    return read_lines(metrics, MetricRecord) if metrics.is_file() else []


def _objective_is_ce(train: list[dict[str, Any]]) -> bool:
    """Whether every logged objective equals its CE: then one curve says both."""
    return all("ce" in r and r["loss"] == r["ce"] for r in train)


def draw_loss(records: list[dict[str, Any]], kept: Kept | None, title: str) -> Figure:
    """The figure: train and validation CE on the left axis, the objective on the right one when
    it differs from the CE, a dashed line at the kept step."""
    from matplotlib.figure import Figure  # no pyplot: no global figure registry, Agg when saved
    from matplotlib.ticker import MaxNLocator

    train = [r for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    figure = Figure(figsize=(6.5, 3.8), dpi=100)
    axes = figure.subplots()
    lines = []
    same = bool(train) and _objective_is_ce(train)
    ce = [(r["step"], r["ce"]) for r in train if "ce" in r]
    if ce:
        lines += axes.plot(*zip(*ce, strict=True), linewidth=1, color="C0",
                           label="train CE (= the objective)" if same else "train CE")
    if val:
        lines += axes.plot(*zip(*val, strict=True), "o-", color="C1", label="validation CE (no teacher)")
    if train and not same:
        right = axes.twinx()
        objective = [(r["step"], r["loss"]) for r in train]
        lines += right.plot(*zip(*objective, strict=True), linewidth=1, color="C2", alpha=0.8,
                            label="train objective (right axis)")
        terms = " + ".join(k for k in ("ce", "kl", "hidden") if any(k in r for r in train))
        right.set_ylabel(f"train objective: weighted {terms or 'loss'}")
    if kept is not None:
        lines.append(axes.axvline(kept.step, color="grey", linestyle="--", linewidth=1, label=kept.label))
    axes.set_xlabel("optimizer step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole; no 1.5
    axes.set_ylabel(CE_AXIS)
    axes.set_title(title if kept is not None or not train else f"{title} (kept step not recorded)")
    if lines:
        axes.legend(lines, [str(line.get_label()) for line in lines], fontsize=8)
    figure.tight_layout()
    return figure


def loss_curve(metrics: Path, png: Path, title: str) -> None:
    """Draw ``metrics`` into ``png``; the kept step comes from the checkpoints the loop writes
    beside ``metrics`` in its folder."""
    figure = draw_loss(read_records(metrics), kept_step(metrics.parent / "checkpoints"), title)
    # Agg PNGs carry no timestamp unless asked ("Software" only), so equal runs give equal bytes.
    write_atomic_with(png, lambda tmp: figure.savefig(tmp, format="png", metadata={"Software": None}))
