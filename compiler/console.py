"""Terminal output for the CLI: diagnostics on stderr, coloured only when stderr is a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from distill.compiler.errors import Diagnostic, DistillError, Severity, SpecError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

_SEVERITY_STYLE = {"error": "bold red", "warning": "bold yellow"}


@cache
def stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


@cache
def stdout() -> Console:
    return Console(highlight=False, soft_wrap=True)


def message_text(where: str, severity: Severity, message: str, hint: str | None) -> Text:
    """``where: error: message`` then ``  hint: ...``, the severity coloured. Built as ``Text``,
    not markup, so brackets in user content are never read as styles."""
    text = Text(f"{where}: " if where else "")
    text.append(severity, style=_SEVERITY_STYLE[severity])
    text.append(f": {message}")
    if hint:
        text.append("\n  hint: ", style="cyan")
        text.append(hint)
    return text


def diagnostic_text(diagnostic: Diagnostic) -> Text:
    return message_text(str(diagnostic.location), diagnostic.severity, diagnostic.message,
                        diagnostic.hint)


def print_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        stderr().print(diagnostic_text(diagnostic))


def print_error(error: DistillError) -> None:
    if isinstance(error, SpecError):
        print_diagnostics(error.diagnostics)
        stderr().print(error.message)
    else:
        stderr().print(message_text("", "error", error.message, error.hint))


class Bars:
    """``bars(name, done, total, note="")`` draws one bar per name on stderr, with ETA and the latest
    note (e.g. the loss); a bar goes when it completes, and ``clear()`` removes the rest (a stage
    stopped early must not leave its bar on screen under the next stage's lines). Without a
    terminal (logs, CI) a bar is a plain line at every tenth of its total and at least every
    ``LOG_EVERY_S`` seconds, so a long stage still shows."""

    LOG_EVERY_S = 30.0

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}
        self._logged: dict[str, tuple[int, float]] = {}  # name -> (tenth, monotonic seconds) last logged
        self._started: dict[str, tuple[int, float]] = {}  # name -> (done, monotonic seconds) first seen

    def __call__(self, name: str, done: int, total: int, note: str = "") -> None:
        if self._progress is None:
            self._log(name, done, total, note)
            return
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total)
        self._progress.update(self._tasks[name], completed=done, total=total, description=f"{name} {note}".strip())
        if done >= total:  # finished: its line goes, so bars of one stage do not pile up
            self._progress.remove_task(self._tasks.pop(name))

    def _log(self, name: str, done: int, total: int, note: str) -> None:
        import time

        tenth, now = done * 10 // max(total, 1), time.monotonic()
        last = self._logged.get(name)
        if last is not None and tenth == last[0] and now - last[1] < self.LOG_EVERY_S and done < total:
            return
        first_done, first_seen = self._started.setdefault(name, (done, now))
        rate = (done - first_done) / (now - first_seen) if done > first_done and now > first_seen else 0.0
        eta = f", about {format_seconds((total - done) / rate)} left" if rate and done < total else ""
        stderr().print(f"  {name} {done}/{total}{' ' + note if note else ''}{eta}", markup=False)
        self._logged[name] = (tenth, now)

    def clear(self) -> None:
        if self._progress is not None:
            for task in self._tasks.values():
                self._progress.remove_task(task)
        self._tasks.clear()
        self._logged.clear()
        self._started.clear()


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 02 min``: an ETA or a duration in a log line."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


@contextmanager
def progress_bars() -> Iterator[Bars]:
    """``Bars`` on stderr: live bars on a terminal (gone when the block ends), log lines otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not stderr().is_terminal:
        yield Bars(None)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=stderr(), transient=True) as progress:
        yield Bars(progress)


# Libraries whose warnings speak to their own developers (tracer notes, deprecations, optional
# kernels missing), not to someone running a build; DISTILL_DEBUG=1 shows them again.
_CHATTY_LOGGERS = ("transformers", "optimum", "accelerate", "bitsandbytes", "peft", "torch", "onnxruntime")


def quiet_libraries() -> None:
    """Silence third-party warnings and info logs for the commands that load models."""
    import logging
    import os
    import warnings

    if os.environ.get("DISTILL_DEBUG") == "1":
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for module in ("torch", "transformers", "optimum", "onnxruntime", "peft", "accelerate", "bitsandbytes"):
        warnings.filterwarnings("ignore", module=module)
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime's quantizer logs through the root logger
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
