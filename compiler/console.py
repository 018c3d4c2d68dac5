"""Terminal output for the CLI: diagnostics on stderr, coloured only when stderr is a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from distill.compiler.errors import Diagnostic, DistillError, Severity, SpecError

if TYPE_CHECKING:
    from rich.progress import TaskID

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


@contextmanager
def progress_bars() -> Iterator[Callable[..., None]]:
    """A ``(name, done, total, note="")`` callback that draws one bar per name on stderr (with
    ETA and the latest note, e.g. the loss), gone when the block ends."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bars: dict[str, TaskID] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=stderr(), transient=True) as progress:
        def update(name: str, done: int, total: int, note: str = "") -> None:
            if name not in bars:
                bars[name] = progress.add_task(name, total=total)
            progress.update(bars[name], completed=done, total=total, description=f"{name} {note}".strip())

        yield update


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
