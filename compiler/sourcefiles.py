"""The files a source pattern names, found in one place for validation, the lock and extraction.

A Distillfile is shared and built by people who did not write it, so its sources are regular files
inside the project (the Distillfile's folder) and nothing else: no absolute path elsewhere
(``/proc/self/environ`` holds the environment, PDF passwords included), no link leading out, no
FIFO, socket or device (reading one blocks or never ends). Matching is bounded: ``**`` never
descends into a linked folder (a link to a parent would make an endless tree), the number of
matches and the size of each file are capped.

Pattern syntax is ``glob.glob``'s with ``recursive=True``: ``*``, ``?`` and ``[...]`` within one
name, ``**`` across folders, names starting with a dot matched only by a pattern that starts with
one. ``open_file`` and ``file_kind`` serve every reader of a user's file (the Distillfile too): a
file is opened without blocking and checked on the open descriptor before it is read.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from distill.compiler.errors import DistillError, ExitCode

# Matches (files and folders) one pattern may reach. A large documentation set has a few thousand
# files; 100,000 keeps listing them to a few seconds while stopping a pattern that walks a whole
# disk.
MAX_MATCHES = 100_000
# Largest source file of any kind. A 300-page manual is 1-20 MB as PDF (scanned at 300 dpi, a few
# hundred MB) and about 1 MB as text; text and dataset files are read whole, and their Python
# strings and objects take a few times the file's size, so 512 MiB bounds one file's memory to a
# few GiB.
MAX_FILE_BYTES = 512 * 2**20

_MAGIC = re.compile(r"[*?[]")  # what makes a name a pattern, as glob.glob decides
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))


class UnsafeSource(DistillError):
    """A source pattern that names something a build must not read, or too much of it. The
    message starts with the pattern or the match (``'x/*.md' points ...``); validation prefixes the
    Distillfile key."""

    exit_code = ExitCode.BAD_SOURCE


@dataclass(frozen=True)
class Matched:
    """What a pattern matches: regular files and folders, absolute and sorted."""

    files: tuple[Path, ...]
    folders: tuple[Path, ...]


def project_folder(root: Path) -> Path:
    """The Distillfile's folder as an absolute path without ``..``: matches are built under it."""
    return Path(os.path.normpath(root.absolute()))


def shown_path(root: Path, file: Path) -> str:
    """A match as the lock and reports show it: relative to the Distillfile's folder."""
    return file.relative_to(project_folder(root)).as_posix()


def inside_hint(root: Path) -> str:
    return f"sources are read only from inside the Distillfile's folder ({root}): copy the files there"


def too_large(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB; a source file may be at most {MAX_FILE_BYTES / 2**20:,.0f} MiB"


def file_kind(mode: int) -> str | None:
    """What a file that is not a regular one is (``a FIFO``); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _KINDS if test(mode)), "an unknown kind of file")


def open_file(path: Path) -> tuple[BinaryIO, os.stat_result]:
    """``path`` open for binary reading, and the status of what was opened (check it before
    reading: a FIFO or device opens fine). Raises OSError, a folder included."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    try:
        return open(descriptor, "rb"), os.fstat(descriptor)  # the caller closes it
    except BaseException:
        os.close(descriptor)  # open() refused it (a folder): the descriptor is still ours
        raise


def match_source(root: Path, pattern: str) -> Matched:
    """The regular files and folders ``pattern`` matches inside ``root``.

    Raises:
        UnsafeSource: the pattern points outside ``root``; a match is a link leading out, is not
            a regular file or folder, is over MAX_FILE_BYTES, or there are over MAX_MATCHES.
    """
    parts = _parts_inside(root, pattern)
    if parts is None:
        raise UnsafeSource(f"{pattern!r} points outside the Distillfile's folder", inside_hint(root))
    found: set[Path] = set()
    for match in _walk(project_folder(root), parts):
        found.add(match)
        if len(found) > MAX_MATCHES:
            raise UnsafeSource(f"{pattern!r} matches more than {MAX_MATCHES:,} files and folders",
                               "narrow the pattern (a folder and an extension, e.g. docs/**/*.md)")
    files: list[Path] = []
    folders: list[Path] = []
    real_root = Path(os.path.realpath(root))
    for match in sorted(found, key=str):
        is_file = _check_match(root, real_root, match)
        (files if is_file else folders).append(match)
    return Matched(tuple(files), tuple(folders))


def _parts_inside(root: Path, pattern: str) -> tuple[str, ...] | None:
    """The pattern's names below the project folder, or None when it leaves the folder. An
    absolute pattern may name the folder as written or as resolved (``/tmp`` being a link)."""
    base = project_folder(root)
    target = Path(os.path.normpath(os.path.join(base, pattern)))
    for folder in (base, Path(os.path.realpath(root))):
        if target.is_relative_to(folder):
            return target.relative_to(folder).parts
    return None


def _check_match(root: Path, real_root: Path, match: Path) -> bool:
    """True for a regular file, False for a folder (never read, so it may be a link anywhere);
    raises for anything a source must not be."""
    shown = repr(shown_path(root, match))
    try:
        info = match.stat()
    except OSError as error:
        raise UnsafeSource(f"match {shown} cannot be read: {error.strerror} (a broken link?)",
                           "remove it or fix what it points to") from None
    if stat.S_ISDIR(info.st_mode):
        return False
    if not Path(os.path.realpath(match)).is_relative_to(real_root):
        raise UnsafeSource(f"match {shown} (a link) points outside the Distillfile's folder",
                           inside_hint(root))
    kind = file_kind(info.st_mode)
    if kind is not None:
        raise UnsafeSource(f"match {shown} is {kind}, not a regular file",
                           "sources are regular files; narrow the pattern to leave it out")
    if info.st_size > MAX_FILE_BYTES:
        raise UnsafeSource(f"match {shown} is {too_large(info.st_size)}",
                           "split the file, or leave it out of the pattern")
    return True


def _walk(folder: Path, parts: tuple[str, ...]) -> Iterator[Path]:
    """Every path under ``folder`` that ``parts`` (one pattern name each) match, as glob.glob
    finds them but entering no linked folder through ``**``."""
    if not parts:
        yield folder
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        for below in _tree(folder, with_files=not rest):  # only folders when names follow
            yield from _walk(below, rest)
    elif _MAGIC.search(head):
        for name in fnmatch.filter(_names(folder, hidden=head.startswith(".")), head):
            child = folder / name
            if not rest:
                yield child
            elif child.is_dir():
                yield from _walk(child, rest)
    else:
        child = folder / head
        if not rest:
            if os.path.lexists(child):
                yield child
        elif child.is_dir():
            yield from _walk(child, rest)


def _tree(folder: Path, with_files: bool) -> Iterator[Path]:
    """``folder`` and every folder below it (and every file, ``with_files``), hidden names left
    out as glob.glob does. A linked folder is listed but never entered: a link to a parent would
    otherwise make the tree endless (glob.glob follows it)."""
    stack = [folder]
    while stack:
        current = stack.pop()
        yield current
        try:
            with os.scandir(current) as entries:
                listed = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries
                          if not entry.name.startswith(".")]
        except OSError:
            continue
        for name, is_dir in listed:
            if is_dir:
                stack.append(current / name)
            elif with_files:
                yield current / name


def _names(folder: Path, hidden: bool) -> list[str]:
    try:
        return [name for name in os.listdir(folder) if hidden or not name.startswith(".")]
    except OSError:
        return []
