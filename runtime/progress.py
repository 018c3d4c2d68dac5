"""The progress callback every stage reports through: ``progress(what, done, total, note="")``,
called as a pass or a loop advances (the build's bars and log lines implement it)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[..., None]
