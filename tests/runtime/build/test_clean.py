"""``distill clean``: what it removes, what it keeps (the plan's, the published builds', the newest
with --keep-last, the unfinished), and the space it counts (hard links once)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from distill.compiler.records.stage import BuildRecord
from distill.runtime.build.clean import clean_state

MIB = 1 << 20
META = 1024  # a meta.json's bytes, at most


def about(freed: int, data: int) -> bool:
    return data <= freed < data + 2 * META


def stage(state: Path, name: str, key: str, size: int = MIB, finished: bool = True) -> Path:
    folder = state / name / key[:16]
    folder.mkdir(parents=True)
    (folder / "data.bin").write_bytes(b"\0" * size)
    if finished:
        (folder / "meta.json").write_text(json.dumps({"key": key}))
    time.sleep(0.01)  # distinct mtimes: --keep-last orders by when a stage finished
    return folder


def test_clean_keeps_the_plan_and_published_builds_and_removes_the_rest(tmp_path: Path) -> None:
    state, dist = tmp_path / ".distill", tmp_path / "dist"
    current = stage(state, "train", "a" * 64)
    published = stage(state, "export-gguf-Q8_0", "b" * 64)
    old = stage(state, "train", "c" * 64, size=3 * MIB)
    unfinished = stage(state, "train", "d" * 64, finished=False)
    (state / "gguf" / ("e" * 64)).mkdir(parents=True)  # a converted GGUF source: not a stage folder
    report = stage(state, "report", "f" * 64)  # the published build's own: named by .build-key only
    (dist / "teacher").mkdir(parents=True)
    BuildRecord(lock_sha256="0" * 64, stages={"export:gguf:Q8_0": "b" * 64}, data_sha256={},
                outputs={}).write(dist / "teacher" / "build.json")
    (dist / "teacher" / ".build-key").write_text("f" * 64 + "\n")
    (dist / "broken").mkdir()
    (dist / "broken" / "build.json").write_text("{not json")

    dry = clean_state(state, dist, {"train": "a" * 64}, keep_last=0, dry_run=True)
    assert dry.removed == (old,) and about(dry.freed, 3 * MIB) and old.is_dir()
    done = clean_state(state, dist, {"train": "a" * 64}, keep_last=0, dry_run=False)
    assert done == dry and not old.exists()
    assert current.is_dir() and published.is_dir() and report.is_dir() and unfinished.is_dir()
    assert (state / "gguf").is_dir() and done.kept == 3 and done.unfinished == (unfinished,)


def test_keep_last_keeps_the_newest_per_stage(tmp_path: Path) -> None:
    state = tmp_path / ".distill"
    older, newer = stage(state, "report", "1" * 64), stage(state, "report", "2" * 64)
    evaluation = stage(state, "evaluate", "3" * 64)
    done = clean_state(state, tmp_path / "dist", {}, keep_last=1, dry_run=False)
    assert done.removed == (older,) and newer.is_dir() and evaluation.is_dir()


def test_a_file_linked_from_a_kept_folder_frees_nothing(tmp_path: Path) -> None:
    state = tmp_path / ".distill"
    train = stage(state, "train", "a" * 64, size=2 * MIB)
    report = stage(state, "report", "b" * 64, size=MIB)
    os.link(train / "data.bin", report / "model.bin")  # as the report stage links the model
    kept_train = clean_state(state, tmp_path / "dist", {"train": "a" * 64}, keep_last=0, dry_run=True)
    assert kept_train.removed == (report,) and about(kept_train.freed, MIB)  # its own files only
    both = clean_state(state, tmp_path / "dist", {}, keep_last=0, dry_run=True)
    assert about(both.freed, 2 * MIB + MIB)  # every link of the model goes: counted once
