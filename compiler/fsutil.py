"""Atomic writes: a reader sees the old file (or folder) or the new one, never half of one.

Temp files and folders are siblings named ``.<name>.<pid>.<8 hex>.tmp`` (a replaced folder is set
aside as ``.<name>.old-<pid>``): the pid tells a later build whether the writer still runs, so what
a killed one left can be removed (``remove_leftovers``). They are created with mode 0666 / 0777,
which the kernel narrows by the process umask, as for any file a tool writes (``mkstemp`` and
``mkdtemp`` made them 0600 / 0700, and the rename kept that). The written files get that mode
back afterwards: safetensors' ``save_file`` writes its own 0600 temp file and renames it over the
path it is given. Reading the mode the kernel gave spares reading the umask: ``os.umask`` can only
be read by setting it, process-wide, and a thread creating a file in between gets the wrong mode.

A full disk is a ``DiskFull`` naming the path being written and the space free there
(``out_of_space_named``), never a bare ``[Errno 28]``.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from distill.compiler.errors import DiskFull, DistillError
from distill.compiler.units import format_size

_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How writers report it without an errno: torch.save a RuntimeError ("[enforce fail at
# inline_container.cc:672] . PytorchStreamWriter failed writing file data/3: file write failed"),
# safetensors a SafetensorError ("... No space left on device ..."), numpy's tofile (the GGUF
# writer's) an OSError("8192 requested and 2096 written"): a short write to a regular file.
# Only writers' words: a reader's inline_container failure (a truncated file) is not a full disk.
_NO_SPACE_TEXT = re.compile(
    r"No space left on device|Disk quota exceeded|file write failed|\d+ requested and \d+ written")
_TEMP = re.compile(r"\.(?P<of>.+?)\.(?:(?P<pid>\d+)\.)?[a-z0-9_]{8}\.tmp")  # no pid: mkstemp's, older builds
_ASIDE = re.compile(r"\.(?P<of>.+)\.old-(?P<pid>\d+)")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` atomically (see ``write_atomic_with``)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)

    write_atomic_with(path, write)


def write_atomic_with(path: Path, write: Callable[[Path], object]) -> None:
    """Let ``write`` fill a temp file in the same folder, fsync it, then rename it over ``path``
    (rename is atomic within one file system, which a sibling temp file guarantees). For writers
    that want a path, such as safetensors' ``save_file``.

    Raises:
        DiskFull: when the disk fills, naming ``path``; the temp file is removed.
    """
    with out_of_space_named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _created_beside(path, lambda name: os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))
        try:
            mode = stat.S_IMODE(tmp.stat().st_mode)  # 0666 less the umask
            write(tmp)
            os.chmod(tmp, mode)
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
def staged_folder(dest: Path, needed: int | None = None, keep_existing: bool = False) -> Iterator[Path]:
    """A temp folder beside ``dest`` to fill in the block. When the block ends, its files are
    fsynced and it takes ``dest``'s place: an older ``dest`` is renamed aside first and removed
    after (two renames: a reader sees the old folder, briefly none, or the new one, never half).
    With ``keep_existing`` (a content-addressed folder, which another process may have made the
    same meanwhile and be reading), a ``dest`` that exists by then is kept and ours dropped.
    When the block raises, the temp folder is removed and ``dest`` is left as it was.

    Raises:
        DiskFull: when the disk fills in the block, naming ``dest`` (and ``needed``, the bytes the
            block writes, when the caller knows them).
    """
    with out_of_space_named(dest, needed):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _created_beside(dest, lambda name: os.mkdir(name, 0o777))
        file_mode = stat.S_IMODE(tmp.stat().st_mode) & 0o666  # 0777 less the umask, less execute
        try:
            yield tmp
            for path in tmp.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    os.chmod(path, file_mode)
                    fsync_file(path)
            if keep_existing:
                _rename_unless_there(tmp, dest)
            else:
                old = None
                if dest.exists():
                    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
                    dest.rename(old)
                tmp.rename(dest)
                if old is not None:
                    shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _rename_unless_there(tmp: Path, dest: Path) -> None:
    """Rename a folder to ``dest`` unless ``dest`` exists: rename(2) refuses a non-empty folder in
    the same step that checks it, so two writers racing leave one of theirs, whole."""
    try:
        tmp.rename(dest)
    except OSError as error:
        if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise


def _created_beside(path: Path, create: Callable[[Path], None]) -> Path:
    """A new sibling ``.<name>.<pid>.<8 hex>.tmp`` made by ``create`` (which must refuse an
    existing name: O_EXCL, mkdir); 32 random bits make a second try all but unheard of."""
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            create(tmp)
        except FileExistsError:
            continue
        return tmp


def remove_leftovers(folder: Path, of: str | None = None) -> None:
    """Remove the temp files and folders of these helpers that a killed writer left: in
    ``folder`` and below it, or, with ``of``, only ``folder``'s entries staging ``of`` (``dist/``
    holds every project's output). An entry whose writer still runs is kept; one without a pid in
    its name (an older build's) is removed. Call it only where no other writer works unnamed by a
    pid: under the build lock, in the build's own folders."""
    if not folder.is_dir():
        return
    for path in list(folder.rglob(".*")) if of is None else list(folder.iterdir()):
        match = _TEMP.fullmatch(path.name) or _ASIDE.fullmatch(path.name)
        if match is None or of not in (None, match["of"]) or (match["pid"] and process_running(int(match["pid"]))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def process_running(pid: int) -> bool:
    """Whether process ``pid`` exists (a leftover's writer that still runs keeps its files)."""
    try:
        os.kill(pid, 0)  # signal 0: existence and permission checked, nothing sent
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


@contextmanager
def out_of_space_named(path: Path, needed: int | None = None) -> Iterator[None]:
    """Turn a full disk or quota while the block writes ``path`` into ``DiskFull`` naming it
    (the file an ``OSError`` names, when it names one) and the space left on its file system.
    Other errors pass unchanged."""
    try:
        yield
    except DistillError:
        raise
    except Exception as error:
        if not _is_out_of_space(error):
            raise
        named = Path(error.filename) if isinstance(error, OSError) and error.filename else path
        raise _disk_full(_final(named), needed) from error


def _final(path: Path) -> Path:
    """``path`` with each temp entry of these helpers named as what it stages: where the bytes
    were going (the temp entry is gone by the time the user reads the message)."""
    return Path(*(match["of"] if (match := _TEMP.fullmatch(part)) else part for part in path.parts))


def _is_out_of_space(error: BaseException) -> bool:
    """ENOSPC or EDQUOT, as an ``OSError`` or in the words of writers that give no errno."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno in _NO_SPACE_ERRNOS
    return _NO_SPACE_TEXT.search(str(error)) is not None


def _disk_full(path: Path, needed: int | None) -> DiskFull:
    """The error, with the space free once the failed write's temp files are gone: what a retry
    has (``needed`` counts tensor bytes, not the file system's block rounding: "about")."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    free = format_size(shutil.disk_usage(existing).free)
    space = f"about {format_size(needed)} needed, {free} free there now" if needed else f"{free} free there now"
    return DiskFull(f"no space left on the device writing {path}: {space}",
                    hint="free space on that disk (or move the project to a larger one) and run the command "
                         "again: finished stages and checkpoints are kept")


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
