"""The files a build writes about its stages: ``meta.json`` (a finished stage), ``build.json``
(what a published build was made of) and ``worker-error.json`` (a user-facing error in a stage's
worker processes, for the build that launched them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from distill.compiler.records.record import Record


@dataclass(frozen=True)
class FileRecord:
    """A stage's output file as it was when the stage finished."""

    sha256: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class StageMeta(Record):
    """``.distill/<stage>/<key>/meta.json``, written last: the mark of a finished stage.

    ``summary`` is the stage's own JSON summary (what it reports to the build: its shape is the
    stage's, read only by the stage's own code); ``files`` its output files by path relative to
    the folder; ``device_peak`` the CUDA allocator's peaks, when it ran on a GPU."""

    KIND: ClassVar[str] = "stage"
    VERSION: ClassVar[int] = 1

    stage: str
    stage_version: int
    key: str
    upstream: dict[str, str]
    seconds: float
    summary: dict[str, Any]
    files: dict[str, FileRecord]
    device_peak: dict[str, int] | None = None


@dataclass(frozen=True)
class BuildRecord(Record):
    """``dist/<name>/build.json``: the lock's sha256 (``sha256sum Distillfile.lock`` checks it),
    every stage's key, the synthesized data's hash per split and each model file's hash."""

    KIND: ClassVar[str] = "build"
    VERSION: ClassVar[int] = 1

    lock_sha256: str
    stages: dict[str, str]
    data_sha256: dict[str, str]
    outputs: dict[str, str]


@dataclass(frozen=True)
class WorkerError(Record):
    """A user-facing error raised in a stage's worker processes: the launching build raises it
    again with the same message, hint and exit code."""

    KIND: ClassVar[str] = "worker-error"
    VERSION: ClassVar[int] = 1

    message: str
    hint: str | None
    exit_code: int
