"""``distill clean``: remove the cached stage outputs nothing uses any more.

A stage folder (``.distill/<stage>/<key[:16]>/``) is in use when the Distillfile's current plan
keys it, or when a published build came from it (``dist/*/build.json`` and ``.build-key``: another
Distillfile of the same project, such as the quickstart's teacher, publishes there too). An unfinished folder (no
``meta.json``) is an interrupted stage that a build resumes: it is kept. Everything else goes,
except the ``keep_last`` most recently finished folders of each stage.

Space is counted per inode: the report stage hard-links the models and artifacts of the stages
it reads, so removing a folder frees only the files no kept folder links to.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from distill.compiler.records.record import RecordError
from distill.compiler.records.stage import BuildRecord
from distill.runtime.build.graph import META, exclusive, stage_folder

_KEY_FOLDER = re.compile(r"[0-9a-f]{16}")  # a stage folder's name: its key's first 16 hex digits


@dataclass(frozen=True)
class Cleaning:
    """What ``clean_state`` removed (or, dry, would remove): the folders, the bytes that frees,
    how many finished folders it kept, and the unfinished ones it kept for a build to resume."""

    removed: tuple[Path, ...]
    freed: int
    kept: int
    unfinished: tuple[Path, ...]


def clean_state(state: Path, dist: Path, current: dict[str, str], keep_last: int, dry_run: bool) -> Cleaning:
    """Remove the finished stage folders under ``state`` that neither ``current`` (stage name ->
    key, the Distillfile's plan) nor a build record in ``dist`` names, but the ``keep_last``
    newest per stage; under the build lock, so no build writes meanwhile."""
    with exclusive(state):
        used = {stage_folder(state, name, key) for name, key in current.items()} | set(_published(state, dist))
        finished, unfinished = _stage_folders(state)
        spare = [folder for folder in finished if folder not in used]
        removed = [folder for folder in spare if folder not in _newest(spare, keep_last)]
        freed = _freed_bytes(removed)
        if not dry_run:
            for folder in removed:
                shutil.rmtree(folder)
        return Cleaning(tuple(removed), freed, len(finished) - len(removed),
                        tuple(f for f in unfinished if f not in used))


def _published(state: Path, dist: Path) -> Iterable[Path]:
    """The stage folders each published build came from: those its build record names, and the
    report stage's own, whose key ``dist/<name>/.build-key`` holds (the record is written inside
    that stage, which cannot name its own key)."""
    from distill.runtime.build.run import BUILD_RECORD, KEY_FILE

    for record in sorted(dist.glob(f"*/{BUILD_RECORD}")):
        try:
            stages = BuildRecord.read(record).stages
            report = (record.parent / KEY_FILE).read_text("utf-8").strip()
        except (OSError, RecordError):
            continue  # not a build this distill published: it protects nothing, and is not ours to judge
        yield from (stage_folder(state, name, key) for name, key in {**stages, "report": report}.items())


def _stage_folders(state: Path) -> tuple[list[Path], list[Path]]:
    """Finished and unfinished stage folders, sorted."""
    folders = sorted(p for p in state.glob("*/*") if p.is_dir() and _KEY_FOLDER.fullmatch(p.name))
    return [p for p in folders if (p / META).is_file()], [p for p in folders if not (p / META).is_file()]


def _newest(folders: list[Path], count: int) -> set[Path]:
    """The ``count`` most recently finished folders of each stage."""
    kept: set[Path] = set()
    for stage in {folder.parent for folder in folders}:
        mine = sorted((f for f in folders if f.parent == stage), key=lambda f: (f / META).stat().st_mtime_ns,
                      reverse=True)
        kept.update(mine[:count])
    return kept


def _freed_bytes(folders: list[Path]) -> int:
    """Bytes that removing ``folders`` frees: a file counts once, and only when every one of its
    hard links is among them."""
    links: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [links seen, links total, size]
    for folder in folders:
        for path in folder.rglob("*"):
            info = path.lstat()
            if path.is_file() and not path.is_symlink():
                seen = links.setdefault((info.st_dev, info.st_ino), [0, info.st_nlink, info.st_size])
                seen[0] += 1
    return sum(size for seen, total, size in links.values() if seen >= total)
