"""The files extraction touches: source files, opened with the checks validation made repeated on
the open file itself (a regular file within the size cap, ``compiler/sourcefiles.py``: the disk may
have changed since validation, and a check on the descriptor that is then read lets nothing slip in
between); and the scratch folder for page images and decrypted page copies, inside the project's
``.distill/`` (never the shared ``/tmp``: a decrypted page is as secret as its document)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

from distill.compiler import sourcefiles
from distill.compiler.fsutil import process_running
from distill.runtime.sources.records import SourceError

# A run's scratch folders are named pdf-<pid>-<random>, so a later run can tell a killed run's
# leftovers (their process is gone) from a folder another extraction is using right now.
_SCRATCH_PREFIX = "pdf-"


def open_source(path: Path, shown: str) -> BinaryIO:
    """The file, open for binary reading.

    Raises:
        SourceError: it cannot be opened, is not a regular file, or is over the size cap.
    """
    try:
        stream, info = sourcefiles.open_file(path)
    except OSError as error:
        raise SourceError(shown, f"cannot read: {error.strerror}") from error
    problem = _refusal(info)
    if problem is not None:
        stream.close()
        raise SourceError(shown, problem)
    return stream


def _refusal(info: os.stat_result) -> str | None:
    kind = sourcefiles.file_kind(info.st_mode)
    if kind is not None:
        return f"cannot read: {kind}, not a regular file"
    if info.st_size > sourcefiles.MAX_FILE_BYTES:
        return f"too large: {sourcefiles.too_large(info.st_size)}"
    return None


def read_source(path: Path, shown: str) -> bytes:
    """The whole file, read only after ``open_source``'s checks and never past the cap (a file
    growing while it is read stops one byte over it)."""
    with open_source(path, shown) as stream:
        try:
            data = stream.read(sourcefiles.MAX_FILE_BYTES + 1)
        except OSError as error:
            raise SourceError(shown, f"cannot read: {error.strerror}") from error
    if len(data) > sourcefiles.MAX_FILE_BYTES:
        raise SourceError(shown, f"too large: {sourcefiles.too_large(len(data))}")
    return data


def scratch_folder(root: Path) -> Path:
    """Where extraction keeps page images and decrypted page copies: the project's state folder."""
    return root / ".distill" / "tmp"


def scratch_prefix() -> str:
    """The name prefix of this process's scratch folders."""
    return f"{_SCRATCH_PREFIX}{os.getpid()}-"


def remove_leftovers(scratch: Path) -> None:
    """Remove the scratch folders of extractions that were killed (their process is gone): the
    page image or decrypted page copy they hold must not outlive the run."""
    for folder in scratch.glob(f"{_SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(_SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdecimal() and not process_running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
