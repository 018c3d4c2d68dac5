"""What ``distill build`` shows: stage announcements, outcomes (cached, done, resumed, stopped
early), where an interrupted build stopped, the closing table, and bars without a terminal."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from distill.compiler import console as distill_console
from distill.compiler.console import Bars
from distill.compiler.records.report import ReportArtifact
from distill.runtime.build.graph import Outcome, Stage
from distill.runtime.build.watch import BuildWatcher
from tests.records import evaluation, manifest, model, report

EVALUATION = evaluation(
    [model("teacher", {"perplexity": 398.6, "token_f1": 0.41, "latency_ms": 17.4}, size_bytes=14_693_368),
     model("student", {"perplexity": 314.6, "token_f1": 0.37, "latency_ms": 13.6}, size_bytes=6_298_712),
     model("gguf:Q4_K_M", {"perplexity": 314.5, "token_f1": 0.36, "latency_ms": 1.8}, kind="gguf",
           size_bytes=1_036_000)],
    {"student": {"perplexity": 1.27, "token_f1": 0.9}, "gguf:Q4_K_M": {"perplexity": 1.27}})


def watcher() -> tuple[BuildWatcher, io.StringIO]:
    out = io.StringIO()
    return BuildWatcher(Console(file=out, width=200), Bars(None)), out


def stage(name: str, about: str) -> Stage:
    return Stage(name, 1, (), lambda: {}, lambda folder, up: {}, lambda: about)


def test_stages_are_announced_with_what_they_do_and_how_they_ended() -> None:
    watch, out = watcher()
    watch.finished(Outcome("extract", "k", Path("."), True, 0.4))
    watch.starting(stage("train", "student s on cpu: 27 examples, 50 optimizer steps of 8 x 1"), resumed=True)
    watch.finished(Outcome("train", "k", Path("."), False, 83.2, {"steps": 32, "total_steps": 80, "resumed_from": 30,
                                                                 "stopped_early": True}))
    lines = out.getvalue().splitlines()
    assert lines[0] == "  extract: cached"
    assert lines[1] == ("train: student s on cpu: 27 examples, 50 optimizer steps of 8 x 1 "
                        "(resuming: an interrupted run left its work here)")
    assert lines[2] == ("  train: done in 1 min 23 s, resumed from step 30; stopped early at step 32 of 80: "
                        "the validation loss stopped improving, the best step's weights are kept")


def test_an_interrupted_build_says_where_it_stopped_and_how_to_resume() -> None:
    watch, _ = watcher()
    watch.finished(Outcome("extract", "k", Path("."), True, 0.4))
    watch.starting(stage("train", "x"), resumed=False)
    said = watch.interrupted(Path("examples/quickstart/Distillfile"))
    assert said.startswith("interrupted in the train stage after 0 s; finished and cached: extract.")
    assert said.endswith("resume: distill build examples/quickstart/Distillfile "
                         "(training goes on from its last checkpoint)")


def test_the_build_ends_with_a_metrics_table_and_the_paths(tmp_path: Path) -> None:
    dist = tmp_path / "dist" / "quickstart"
    built = report(evaluation=EVALUATION, artifacts=(ReportArtifact("gguf", "gguf-Q4_K_M", manifest("gguf")),
                                                     ReportArtifact("onnx", "onnx-int8", manifest("onnx"))))
    watch, out = watcher()
    watch.print_summary(watch.console, dist, built)
    text = out.getvalue()
    header = next(line for line in text.splitlines() if "model" in line and "retention" in line)
    assert all(column in header for column in ("perplexity", "token_f1", "size (MiB)", "ms/token"))
    student = next(line for line in text.splitlines() if "student" in line)
    assert all(cell in student for cell in ("314.600", "0.3700", "perplexity 1.27, token_f1 0.90", "6.0", "13.6"))
    assert f"built {dist}" in text and f"model card: {dist / 'README.md'}" in text
    assert f"onnx: {dist / 'onnx-int8'}" in text and f"try it: distill chat {dist / 'gguf-Q4_K_M'}" in text


def test_without_a_terminal_a_bar_is_a_log_line_per_tenth(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(distill_console, "stderr", lambda: Console(file=out, width=200))
    bars = Bars(None)
    for step in range(1, 101):
        bars("train", step, 100, f"loss {1 / step:.3f}")
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[0].startswith("  train 1/100 loss 1.000")  # the first, then each tenth
    assert lines[-1] == "  train 100/100 loss 0.010"
    bars.clear()
    bars("train", 1, 100)
    assert out.getvalue().splitlines()[-1] == "  train 1/100"


def test_on_a_terminal_a_finished_bar_goes_and_clear_removes_the_rest() -> None:
    from rich.progress import Progress

    with Progress(console=Console(file=io.StringIO(), force_terminal=True), transient=True) as progress:
        bars = Bars(progress)
        bars("evaluate teacher", 3, 8)
        bars("evaluate teacher", 8, 8)
        bars("train", 32, 80, "loss 1.9")  # stopped early: never completes
        assert [task.description for task in progress.tasks] == ["train loss 1.9"]
        bars.clear()
        assert progress.tasks == []
