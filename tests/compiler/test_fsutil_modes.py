"""Files and folders written atomically get the user's umask, as any tool's do (issue 16, file
modes): mkstemp/mkdtemp made every published file 0600 and every folder 0700."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.compiler.fsutil import staged_folder, write_atomic, write_atomic_with


@pytest.fixture(params=[0o022, 0o027])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    write_atomic(tmp_path / "Distillfile.lock", "{}\n")
    write_atomic_with(tmp_path / "model.bin", lambda tmp: tmp.write_bytes(b"\0" * 16))
    assert mode(tmp_path / "Distillfile.lock") == mode(tmp_path / "model.bin") == 0o666 & ~umask


def test_staged_folders_follow_the_umask(tmp_path: Path, umask: int) -> None:
    dest = tmp_path / "dist" / "tiny"
    with staged_folder(dest) as staging:
        (staging / "README.md").write_text("card\n")
    assert mode(dest) == 0o777 & ~umask
    assert mode(dest / "README.md") == 0o666 & ~umask


def test_writers_that_choose_0600_themselves_get_the_umask_too(tmp_path: Path, umask: int) -> None:
    """safetensors' save_file writes a 0600 temp file of its own and renames it into place."""
    import numpy as np
    from safetensors.numpy import save_file

    write_atomic_with(tmp_path / "trainable.safetensors", lambda tmp: save_file({"w": np.ones(4)}, str(tmp)))
    with staged_folder(tmp_path / "model") as staging:
        save_file({"w": np.ones(4)}, str(staging / "model.safetensors"))
    assert mode(tmp_path / "trainable.safetensors") == mode(tmp_path / "model" / "model.safetensors") == 0o666 & ~umask
