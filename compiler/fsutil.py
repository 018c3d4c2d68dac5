"""Atomic writes: a reader sees the old file (or folder) or the new one, never half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` atomically (see ``write_atomic_with``)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)

    write_atomic_with(path, write)


def write_atomic_with(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a temp file in the same folder, fsync it, then rename it over ``path``
    (rename is atomic within one file system, which a sibling temp file guarantees). For writers
    that want a path, such as safetensors' ``save_file``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_file(path: Path) -> None:
    """Flush a written file's bytes to disk, so a rename that follows never exposes a hole."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def staged_folder(dest: Path) -> Iterator[Path]:
    """A temp folder beside ``dest`` to fill in the block. When the block ends, its files are
    fsynced and it takes ``dest``'s place: an older ``dest`` is renamed aside first and removed
    after (two renames: a reader sees the old folder, briefly none, or the new one, never half).
    When the block raises, the temp folder is removed and ``dest`` is left as it was."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        for path in tmp.rglob("*"):
            if path.is_file():
                fsync_file(path)
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            dest.rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def link_tree(src: Path, dest: Path) -> None:
    """``src``'s files in ``dest`` as hard links (a copy where the file system refuses one), for
    folders inside the build cache, whose files are written once and never changed in place: a
    merged 8B model is 16 GB that the report stage need not write a second time."""

    def link(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    shutil.copytree(src, dest, copy_function=link, dirs_exist_ok=True)
