"""An append-only journal of finished generation work, so a killed run resumes where it stopped.

One JSON line per finished item (``{"key": ..., "value": ...}``) after a header line naming what
the work is for (a fingerprint of the settings and inputs): a journal written for other settings is
started afresh, never mixed in. A batch's lines go out in one ``write`` and are fsynced: a process
killed with SIGKILL either wrote the whole batch or none of it (a write to a regular file is not
interrupted by signals). A power cut can still tear the last line; it is cut off on load and that
item is generated again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.compiler.errors import DistillError
from distill.compiler.records.record import lines_text, parse_line

VERSION = 1


@dataclass(frozen=True)
class Header:
    """The first line: the journal's format version and what the work is for."""

    journal: int
    fingerprint: str


@dataclass(frozen=True)
class Entry:
    """A finished item: its key and its value (JSON data: a teacher's replies, for one)."""

    key: str
    value: Any


class JournalDamaged(DistillError):
    """A complete line of the journal is not an entry (damage from outside distill)."""


class Journal:
    """Finished items by key; ``load`` first, then ``append`` as batches finish."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path, self.fingerprint = path, fingerprint

    def load(self) -> dict[str, Any]:
        """Every finished item; a journal for another fingerprint (or unreadable) is discarded."""
        snapshot = self._snapshot()
        if snapshot is None:
            return self._start()
        complete, lines = snapshot
        if complete != self.path.stat().st_size:  # a torn last line: cut it so appends start on a line
            with self.path.open("r+b") as handle:
                handle.truncate(complete)
        return self._entries(lines)

    def read(self) -> dict[str, Any]:
        """The finished items of a journal another process writes, without touching it: nothing
        when it is missing or for another fingerprint; a torn last line is left for its writer."""
        snapshot = self._snapshot()
        return {} if snapshot is None else self._entries(snapshot[1])

    def _snapshot(self) -> tuple[int, list[str]] | None:
        """The bytes up to the last newline and their lines, when the file is this fingerprint's."""
        if not self.path.is_file():
            return None
        data = self.path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        lines = complete.decode("utf-8", errors="replace").splitlines()
        if not lines or parse_line(lines[0], Header) != Header(VERSION, self.fingerprint):
            return None
        return len(complete), lines

    def _entries(self, lines: list[str]) -> dict[str, Any]:
        items: dict[str, Any] = {}
        for number, line in enumerate(lines[1:], start=2):
            entry = parse_line(line, Entry)
            if entry is None:
                # Whole lines are written at once, so this is damage from outside: stop rather
                # than silently redo (or drop) work.
                raise JournalDamaged(f"{self.path}:{number}: not a journal entry",
                                     hint="delete the file to generate its items again")
            items[entry.key] = entry.value
        return items

    def append(self, items: Mapping[str, Any]) -> None:
        """Record finished items, all or none of them."""
        if not items:
            return
        payload = lines_text(Entry(key, value) for key, value in items.items()).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            written = os.write(fd, payload)
            if written != len(payload):  # only a full disk does this to a regular file
                raise OSError(f"{self.path}: wrote {written} of {len(payload)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)

    def _start(self) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(lines_text([Header(VERSION, self.fingerprint)]), "utf-8")
        return {}

