"""Diagnostics and the errors that carry them to the CLI.

Every error a user can cause is a ``DistillError`` with an exit code; the CLI maps them to text in
one place (``compiler/cli.py``). Spec errors carry located ``Diagnostic``s, all collected before
exit and printed in file order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal


class ExitCode(IntEnum):
    """Process exit codes, documented in the README."""

    OK = 0
    INVALID_SPEC = 1
    USAGE = 2
    DOES_NOT_FIT = 3
    GATE_FAILED = 4
    STALE_LOCK = 5
    BAD_SOURCE = 6
    VERIFY_FAILED = 7
    NO_DATA = 8
    BUSY = 9
    DISK_FULL = 10
    INTERNAL = 70


@dataclass(frozen=True, order=True)
class Location:
    """A 1-based line and column in a file, as editors count them."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Diagnostic:
    """One located message about a Distillfile."""

    location: Location
    message: str
    hint: str | None = None
    severity: Severity = "error"


def in_file_order(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    """Sort by position, keeping the order of diagnostics at the same position."""
    return sorted(diagnostics, key=lambda d: (d.location.line, d.location.column))


class DistillError(Exception):
    """An error caused by the user's input or environment, shown without a traceback."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(DistillError):
    """The command line itself is wrong: a missing file, a directory without a Distillfile."""

    exit_code = ExitCode.USAGE


class SpecError(DistillError):
    """The Distillfile is invalid; carries every diagnostic found, in file order."""

    exit_code = ExitCode.INVALID_SPEC

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = in_file_order(diagnostics)
        errors = sum(d.severity == "error" for d in self.diagnostics)
        super().__init__(f"{errors} error{'s' * (errors != 1)}")


class DiskFull(DistillError):
    """A write failed for want of space (ENOSPC, or EDQUOT: a quota): the user's disk, not a bug.
    Raised by ``compiler.fsutil.out_of_space_named`` with the path and the free space."""

    exit_code = ExitCode.DISK_FULL
