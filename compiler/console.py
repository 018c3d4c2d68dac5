"""Terminal output for the CLI: diagnostics on stderr, coloured only when stderr is a terminal."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from rich.console import Console
from rich.text import Text

from distill.compiler.errors import Diagnostic, DistillError, Severity, SpecError

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
