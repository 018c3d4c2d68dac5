"""The build's stage graph executor: content-keyed stages, cached under ``.distill/``.

A stage's key is the sha256 of the canonical JSON of its name, its version, its whole input slice
(spec sections, plan settings, input file digests) and the keys of the stages it reads. Its
outputs live in ``.distill/<stage>/<key[:16]>/`` with a ``meta.json`` written last (atomically):
a folder with ``meta.json`` is a finished stage and is not run again; a folder without one is a
stage that was interrupted, and running it again continues in the same folder (synthesis journals
and training checkpoints live there, so work done before a crash is kept). Temp files that a
killed write left in a stage's folder are removed when the folder is resumed or reused.

``meta.json`` records the sha256, size and mtime of every file the stage wrote, and a finished
stage is reused only while its files still match: a changed one (overwritten, truncated, deleted)
clears the folder and runs the stage again, and every stage that read it too. The check stats
each file (about 20 us) and hashes only a file whose mtime moved: measured here, sha256 reads at
about 1000 MiB/s (hashlib, SHA-NI, file in the page cache), and a merged 8B student is 16 GB in
the train folder and again, hard-linked, in the report's, so hashing every file at every build
would add about 32 s (16 GB x 2 / 1 GB/s; more from a cold disk) to a build that runs nothing. A
write moves the mtime (the kernel sets it), so the stat catches an overwrite of the same size;
what it cannot catch is a change that also restores the mtime (``touch -d``, bit rot under the
file system). The hash decides for a file that was only touched (``cp -r`` without ``-p``): its
new mtime is recorded, so the next build stats it again instead of hashing.

One build per project at a time: ``.distill/build.lock`` is held with ``flock`` for the whole
build (released by the kernel if the process dies, so a killed build never leaves it stale).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from distill.compiler.codec import canonical_json
from distill.compiler.digest import digest_file
from distill.compiler.errors import DistillError, ExitCode, UsageError
from distill.compiler.fsutil import out_of_space_named, remove_leftovers
from distill.compiler.records.record import RecordError
from distill.compiler.records.stage import FileRecord, StageMeta

META = "meta.json"


class BuildBusy(DistillError):
    exit_code = ExitCode.BUSY


@dataclass(frozen=True)
class Stage:
    """One node: ``inputs`` is its slice of the spec/plan/input digests (JSON data), ``needs``
    the stages whose outputs it reads, ``run(folder, upstream)`` does the work into ``folder``
    and returns a JSON summary for ``meta.json``; ``about()`` says what it will do, for the line
    that announces it."""

    name: str
    version: int
    needs: tuple[str, ...]
    inputs: Callable[[], Any]
    run: Callable[[Path, Mapping[str, Path]], dict[str, Any]]
    about: Callable[[], str] = lambda: ""


@dataclass
class Outcome:
    name: str
    key: str
    folder: Path
    cached: bool
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)  # files found changed since it finished: why it ran again


def stage_key(stage: Stage, upstream: Mapping[str, str]) -> str:
    import hashlib

    text = canonical_json({"stage": stage.name, "version": stage.version, "inputs": stage.inputs(),
                           "upstream": {name: upstream[name] for name in stage.needs}})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stage_folder(state: Path, name: str, key: str) -> Path:
    """Where a stage keeps its outputs: ``.distill/export-gguf-Q4_K_M/<key[:16]>/`` (no ':' in paths)."""
    return state / name.replace(":", "-") / key[:16]


def planned_keys(stages: Sequence[Stage]) -> dict[str, str]:
    """Every stage's key, in graph order (each after the ones it reads), as ``run_graph`` computes
    it for a build that runs nothing again."""
    keys: dict[str, str] = {}
    for stage in stages:
        keys[stage.name] = stage_key(stage, keys)
    return keys


def run_graph(stages: Sequence[Stage], state: Path, rerun: set[str], report: Callable[[Outcome], None],
              starting: Callable[[Stage, bool], None] = lambda stage, resumed: None) -> dict[str, Outcome]:
    """Run ``stages`` in order (each after the ones it needs); ``rerun`` names stages to run even
    when finished (their folder is cleared first). ``starting(stage, resumed)`` is called before a
    stage runs (not for a cached one), ``resumed`` when an interrupted run left work in its folder;
    ``report(outcome)`` after it ran or was found cached. A finished stage whose files changed runs
    again, with every stage after it that reads it: a second run need not write the same bytes
    (GPU kernels are not bit-deterministic), so what read the first one's files is stale."""
    done: dict[str, Outcome] = {}
    again = set(rerun)
    for stage in stages:
        key = stage_key(stage, {name: done[name].key for name in stage.needs})
        folder = stage_folder(state, stage.name, key)
        remove_leftovers(folder)
        changed = [] if stage.name in again else changed_since_finished(folder)
        if stage.name in again or changed:
            shutil.rmtree(folder, ignore_errors=True)
        if changed:
            again |= downstream(stages, stage.name)
        outcome = _run_one(stage, key, folder, {name: done[name].folder for name in stage.needs}, starting)
        outcome.changed = changed
        done[stage.name] = outcome
        report(outcome)
    return done


def _run_one(stage: Stage, key: str, folder: Path, upstream: Mapping[str, Path],
             starting: Callable[[Stage, bool], None]) -> Outcome:
    if (folder / META).is_file():  # finished, and unchanged: run_graph checked
        recorded = StageMeta.read(folder / META)
        return Outcome(stage.name, key, folder, True, recorded.seconds, recorded.summary)
    starting(stage, folder.is_dir() and any(folder.iterdir()))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with device_peaks() as peaks, out_of_space_named(folder):  # a writer that names no file: the stage's folder
        summary = stage.run(folder, upstream)
    seconds = record_finished(stage, key, folder, upstream, started, summary, peaks)
    return Outcome(stage.name, key, folder, False, seconds, summary)


def changed_since_finished(folder: Path) -> list[str]:
    """The files of a finished stage that differ from what its ``meta.json`` recorded (missing,
    another size, or moved mtime and another sha256), ``[META]`` when ``meta.json`` itself cannot
    be read (damaged, or written by another version of distill); none for a stage that has not
    finished."""
    path = folder / META
    if not path.is_file():
        return []
    try:
        meta = StageMeta.read(path)
    except RecordError:
        return [META]
    changed, current = [], {}
    for name, recorded in sorted(meta.files.items()):
        seen = file_stat(folder / name)
        if seen is None or seen[0] != recorded.size:
            changed.append(name)
        elif seen[1] != recorded.mtime_ns:  # written or only touched: the bytes decide
            if digest_file(folder / name, name).sha256 == recorded.sha256:
                current[name] = replace(recorded, mtime_ns=seen[1])
            else:
                changed.append(name)
    if current and not changed:  # touched, same bytes: the next build need not hash them again
        replace(meta, files={**meta.files, **current}).write(path)
    return changed


def file_stat(path: Path) -> tuple[int, int] | None:
    """(size, mtime_ns) of a file, ``None`` when there is none."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return found.st_size, found.st_mtime_ns


def output_files(folder: Path) -> dict[str, FileRecord]:
    """sha256, size and mtime_ns of every file under ``folder`` but ``meta.json``, by path
    relative to it. Hashing costs about 1 s per GiB (see the module note): once per stage run."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path != folder / META:
            name = path.relative_to(folder).as_posix()
            info = path.stat()
            files[name] = FileRecord(digest_file(path, name).sha256, info.st_size, info.st_mtime_ns)
    return files


def record_finished(stage: Stage, key: str, folder: Path, upstream: Mapping[str, Path], started: float,
                    summary: dict[str, Any], peaks: Mapping[str, int] | None = None) -> float:
    """Write ``meta.json``, the mark of a finished stage, with its files' digests (and its CUDA
    peaks when it used a GPU); returns the seconds it took."""
    seconds = round(time.monotonic() - started, 3)
    StageMeta(stage=stage.name, stage_version=stage.version, key=key,
              upstream={name: str(path) for name, path in upstream.items()}, seconds=seconds, summary=summary,
              files=output_files(folder), device_peak=dict(peaks) if peaks else None).write(folder / META)
    return seconds


@contextmanager
def device_peaks() -> Iterator[dict[str, int]]:
    """The CUDA caching allocator's peak bytes over the block, ``allocated`` (live tensors) and
    ``reserved`` (what the allocator holds from the driver), filled in at its end; empty when
    the block allocated nothing on a GPU. The allocator's cache is emptied first, so one stage's reserved
    blocks do not count towards the next stage's peak. Looks torch up without importing it: the
    compiler-only stages never load it."""
    import gc
    import sys

    peaks: dict[str, int] = {}
    torch, before = sys.modules.get("torch"), 0
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    yield peaks
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized() and torch.cuda.max_memory_allocated() > before:
        peaks.update(allocated=int(torch.cuda.max_memory_allocated()), reserved=int(torch.cuda.max_memory_reserved()))


def downstream(stages: Sequence[Stage], start: str) -> set[str]:
    """``start`` and every stage that reads it, directly or not."""
    names = [stage.name for stage in stages]
    if start not in names:
        raise UsageError(f"--from {start}: no such stage", hint=f"stages: {', '.join(names)}")
    found = {start}
    for stage in stages:
        if any(need in found for need in stage.needs):
            found.add(stage.name)
    return found


@contextmanager
def exclusive(state: Path) -> Iterator[None]:
    """Hold ``.distill/build.lock`` for the block, or refuse at once when another build does."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / "build.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise BuildBusy(f"another distill build of this Distillfile is running (pid {holder})",
                            hint="wait for it to finish; a killed build releases the lock by itself") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
