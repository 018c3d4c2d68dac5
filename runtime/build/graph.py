"""The build's stage graph executor: content-keyed stages, cached under ``.distill/``.

A stage's key is the sha256 of the canonical JSON of its name, its version, its whole input slice
(spec sections, plan settings, input file digests) and the keys of the stages it reads. Its
outputs live in ``.distill/<stage>/<key[:16]>/`` with a ``meta.json`` written last (atomically):
a folder with ``meta.json`` is a finished stage and is not run again; a folder without one is a
stage that was interrupted, and running it again continues in the same folder (synthesis journals
and training checkpoints live there, so work done before a crash is kept).

One build per project at a time: ``.distill/build.lock`` is held with ``flock`` for the whole
build (released by the kernel if the process dies, so a killed build never leaves it stale).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.compiler.codec import canonical_json
from distill.compiler.errors import DistillError, ExitCode, UsageError
from distill.compiler.fsutil import write_atomic

META = "meta.json"


class BuildBusy(DistillError):
    exit_code = ExitCode.BUSY


@dataclass(frozen=True)
class Stage:
    """One node: ``inputs`` is its slice of the spec/plan/input digests (JSON data), ``needs``
    the stages whose outputs it reads, ``run(folder, upstream)`` does the work into ``folder``
    and returns a JSON summary for ``meta.json``."""

    name: str
    version: int
    needs: tuple[str, ...]
    inputs: Callable[[], Any]
    run: Callable[[Path, Mapping[str, Path]], dict[str, Any]]


@dataclass
class Outcome:
    name: str
    key: str
    folder: Path
    cached: bool
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


def stage_key(stage: Stage, upstream: Mapping[str, str]) -> str:
    import hashlib

    text = canonical_json({"stage": stage.name, "version": stage.version, "inputs": stage.inputs(),
                           "upstream": {name: upstream[name] for name in stage.needs}})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_graph(stages: Sequence[Stage], state: Path, rerun: set[str], report: Callable[[Outcome], None]
              ) -> dict[str, Outcome]:
    """Run ``stages`` in order (each after the ones it needs); ``rerun`` names stages to run even
    when finished (their folder is cleared first)."""
    done: dict[str, Outcome] = {}
    for stage in stages:
        key = stage_key(stage, {name: done[name].key for name in stage.needs})
        folder = state / stage.name.replace(":", "-") / key[:16]
        if stage.name in rerun:
            shutil.rmtree(folder, ignore_errors=True)
        outcome = _run_one(stage, key, folder, {name: done[name].folder for name in stage.needs})
        done[stage.name] = outcome
        report(outcome)
    return done


def _run_one(stage: Stage, key: str, folder: Path, upstream: Mapping[str, Path]) -> Outcome:
    meta = folder / META
    if meta.is_file():
        recorded = json.loads(meta.read_text("utf-8"))
        return Outcome(stage.name, key, folder, True, recorded.get("seconds", 0.0), recorded.get("summary", {}))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with device_peaks() as peaks:
        summary = stage.run(folder, upstream)
    seconds = record_finished(stage, key, folder, upstream, started, summary, peaks)
    return Outcome(stage.name, key, folder, False, seconds, summary)


def record_finished(stage: Stage, key: str, folder: Path, upstream: Mapping[str, Path], started: float,
                    summary: dict[str, Any], peaks: Mapping[str, int] | None = None) -> float:
    """Write ``meta.json``, the mark of a finished stage (with its CUDA peaks when it used a
    GPU); returns the seconds it took."""
    seconds = round(time.monotonic() - started, 3)
    meta = {"stage": stage.name, "version": stage.version, "key": key,
            "upstream": {name: str(path) for name, path in upstream.items()}, "seconds": seconds, "summary": summary}
    if peaks:
        meta["device_peak"] = dict(peaks)
    write_atomic(folder / META, json.dumps(meta, indent=2, sort_keys=True) + "\n")
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
