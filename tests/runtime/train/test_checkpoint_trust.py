"""A full disk and a damaged checkpoint are the user's disk, not distill's bugs (issue 16): a full
disk is a ``DiskFull`` naming the path and the free space (exit 10, not 70), and a damaged
checkpoint gives way to the one before it."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from distill.compiler.errors import DiskFull, ExitCode
from distill.compiler.fsutil import staged_folder, write_atomic_with
from distill.runtime.build.graph import Stage, run_graph
from distill.runtime.train import checkpoint
from distill.runtime.train.checkpoint import LoopState

# What torch.save raised when the disk filled mid-checkpoint (issue 16).
TORCH_FULL = ("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
              "data/3: file write failed")


def tiny() -> tuple[dict[str, torch.nn.Module], Any, Any]:
    torch.manual_seed(0)
    modules = {"student": torch.nn.Linear(4, 4)}
    optimizer = torch.optim.AdamW(modules["student"].parameters(), lr=0.1)
    modules["student"](torch.ones(1, 4)).sum().backward()
    optimizer.step()
    return modules, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def save_steps(folder: Path, *steps: int) -> None:
    modules, optimizer, scheduler = tiny()
    for step in steps:
        checkpoint.save(folder, modules, optimizer, scheduler, LoopState(step=step))


def test_a_full_disk_while_checkpointing_names_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "checkpoints"
    save_steps(folder, 3)

    def full(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(TORCH_FULL)

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DiskFull) as raised:
        save_steps(folder, 6)
    assert raised.value.exit_code == ExitCode.DISK_FULL == 10
    assert str(folder / "step-00000006") in raised.value.message and " free there now" in raised.value.message
    assert "needed" in raised.value.message  # the checkpoint's size, known before writing
    assert [p.name for p in folder.iterdir()] == ["step-00000003"]  # no half checkpoint, the last one kept
    assert checkpoint.load_latest(folder).state.step == 3


def test_enospc_from_a_writer_names_the_file(tmp_path: Path) -> None:
    def full(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull) as raised:
        write_atomic_with(tmp_path / "model.safetensors", full)
    assert str(tmp_path / "model.safetensors") in raised.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_staging_a_folder_names_it_and_keeps_the_old_one(tmp_path: Path) -> None:
    """An export's writer (``[Errno 28]``, no path) fills the disk inside ``staged_folder``."""
    out = tmp_path / "artifact"
    out.mkdir()
    (out / "model.gguf").write_text("old")
    with pytest.raises(DiskFull) as raised, staged_folder(out, needed=3 * 2**30) as staging:
        (staging / "model.gguf").write_text("new, half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(out) in raised.value.message and "3.00 GiB needed" in raised.value.message
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"] and (out / "model.gguf").read_text() == "old"


def test_a_full_disk_anywhere_in_a_stage_names_the_stage_folder(tmp_path: Path) -> None:
    """Writers that do not name their file (a GGUF writer's ``write()``: ``[Errno 28]``, no path)."""

    def export(folder: Path, upstream: Any) -> dict[str, Any]:
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    stage = Stage("export:gguf:Q8_0", 1, (), dict, export)
    with pytest.raises(DiskFull) as raised:
        run_graph([stage], tmp_path, set(), lambda outcome: None)
    assert str(tmp_path / "export-gguf-Q8_0") in raised.value.message


def test_other_errors_pass_through(tmp_path: Path) -> None:
    def broken(tmp: Path) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        write_atomic_with(tmp_path / "x", broken)


def damage_state(step: Path) -> None:
    """Truncate ``state.pt`` as a full disk or an interrupted copy leaves it."""
    data = (step / "state.pt").read_bytes()
    (step / "state.pt").write_bytes(data[: len(data) // 2])


def test_a_damaged_checkpoint_falls_back_to_the_one_before(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    save_steps(folder, 3, 6)
    damage_state(folder / "step-00000006")
    with pytest.warns(UserWarning, match="step-00000006.*damaged"):
        restored = checkpoint.load_latest(folder)
    assert restored is not None and restored.state.step == 3
    assert [p.name for p in checkpoint.complete(folder)] == ["step-00000003"]  # the damaged one is gone


def test_damaged_weights_or_loop_state_fall_back_too(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    save_steps(folder, 3, 6)
    (folder / "step-00000006" / "trainable.safetensors").write_bytes(b"\0" * 10)
    with pytest.warns(UserWarning):
        assert checkpoint.load_latest(folder).state.step == 3
    save_steps(folder, 6)
    (folder / "step-00000006" / "loop.json").write_text(json.dumps({"step": 6})[:5])
    with pytest.warns(UserWarning):
        assert checkpoint.load_latest(folder).state.step == 3


def test_only_damaged_checkpoints_start_over(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    save_steps(folder, 3)
    damage_state(folder / "step-00000003")
    with pytest.warns(UserWarning):
        assert checkpoint.load_latest(folder) is None


def test_a_file_named_by_the_error_inside_a_staged_folder_is_shown_where_it_was_going(tmp_path: Path) -> None:
    step = tmp_path / "checkpoints" / "step-00000006"
    with pytest.raises(DiskFull) as raised, staged_folder(step) as staging:
        raise OSError(errno.ENOSPC, "No space left on device", str(staging / "state.pt"))
    assert f"writing {step / 'state.pt'}:" in raised.value.message


def test_a_short_write_without_errno_is_a_full_disk(tmp_path: Path) -> None:
    """numpy's ``tofile`` (the GGUF writer's) on a full disk: no errno, only the byte counts."""

    def short(tmp: Path) -> None:
        raise OSError("8192 requested and 2096 written")

    with pytest.raises(DiskFull):
        write_atomic_with(tmp_path / "model-F16.gguf", short)
