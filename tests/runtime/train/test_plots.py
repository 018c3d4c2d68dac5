"""The loss curve says what each curve is and which step's weights were kept: read from matplotlib's
objects, not pixels, on hand-made metrics and loop states (the real loop's in test_report's build)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.runtime.train.checkpoint import LoopState
from distill.runtime.train.plots import CE_AXIS, Kept, draw_loss, kept_step, loss_curve

KD_RECORDS = [{"step": 1, "loss": 5.5, "ce": 5.0, "kl": 0.5}, {"step": 2, "loss": 4.25, "ce": 4.0, "kl": 0.25},
              {"step": 2, "val_loss": 4.4}, {"step": 3, "loss": 3.5, "ce": 3.25, "kl": 0.25},
              {"step": 3, "val_loss": 4.4}, {"step": 4, "loss": 3.0, "ce": 2.75, "kl": 0.25},
              {"step": 4, "val_loss": 4.6}]


def loop_state(checkpoints: Path, step: int, **state: Any) -> None:
    """A finished checkpoint's loop.json, as checkpoint.save writes it (weights are not read)."""
    folder = checkpoints / f"step-{step:08d}"
    folder.mkdir(parents=True)
    LoopState(step=step, **state).write(folder / "loop.json")


def legend(figure: Any) -> list[str]:
    return [text.get_text() for text in figure.axes[0].get_legend().get_texts()]


def test_early_stopping_keeps_the_first_best_evaluation(tmp_path: Path) -> None:
    # val 4.4 at steps 2 and 3: the second did not improve on the first, whose weights were saved
    evals = [{"step": 2, "val_loss": 4.4}, {"step": 3, "val_loss": 4.4}, {"step": 4, "val_loss": 4.6}]
    loop_state(tmp_path / "checkpoints", 3, best_val=4.4, stopped=False, evals=evals[:2])
    loop_state(tmp_path / "checkpoints", 4, best_val=4.4, stopped=True, evals=evals)
    assert kept_step(tmp_path / "checkpoints") == Kept(2, True)


def test_without_early_stopping_the_last_step_is_kept(tmp_path: Path) -> None:
    loop_state(tmp_path / "checkpoints", 4, best_val=4.4, stopped=False, evals=[{"step": 2, "val_loss": 4.4}])
    assert kept_step(tmp_path / "checkpoints") == Kept(4, False)
    assert kept_step(tmp_path / "none") is None  # an FSDP run writes no checkpoints


def test_kd_run_puts_the_objective_on_its_own_axis_and_marks_the_kept_step() -> None:
    figure = draw_loss(KD_RECORDS, Kept(2, True), "tiny")
    left, right = figure.axes
    assert left.get_ylabel() == CE_AXIS and right.get_ylabel() == "train objective: weighted ce + kl"
    assert legend(figure) == ["train CE", "validation CE (no teacher)", "train objective (right axis)",
                              "kept weights: step 2 (early stopping: best validation CE)"]
    kept = next(line for line in left.get_lines() if line.get_label().startswith("kept"))
    assert list(kept.get_xdata()) == [2, 2]
    objective = right.get_lines()[0]
    assert list(objective.get_ydata()) == [5.5, 4.25, 3.5, 3.0]
    assert left.get_title() == "tiny"


def test_ce_alone_is_one_curve_on_one_axis() -> None:
    records = [{"step": s, "loss": 4.0 - s, "ce": 4.0 - s} for s in (1, 2, 3)] + [{"step": 3, "val_loss": 1.5}]
    figure = draw_loss(records, Kept(3, False), "plain")
    assert len(figure.axes) == 1
    assert legend(figure) == ["train CE (= the objective)", "validation CE (no teacher)",
                              "kept weights: step 3 (the last step)"]


def test_an_unknown_kept_step_is_said_and_the_png_is_deterministic(tmp_path: Path) -> None:
    assert draw_loss(KD_RECORDS, None, "tiny").axes[0].get_title() == "tiny (kept step not recorded)"
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in KD_RECORDS))
    evals = [r for r in KD_RECORDS if "val_loss" in r]
    loop_state(tmp_path / "checkpoints", 4, best_val=4.4, stopped=True, evals=evals)
    loss_curve(metrics, tmp_path / "a.png", "tiny")
    loss_curve(metrics, tmp_path / "b.png", "tiny")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
