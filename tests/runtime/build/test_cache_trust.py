"""The build cache is checked before it is trusted (issue 16): a finished stage's files are
compared with the sha256, size and mtime its meta.json recorded, a changed one runs the stage (and
what read it) again; ``dist/`` always holds the report folder's files; a killed build's temp
files are removed by the next build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from distill.compiler.cli import main
from distill.compiler.errors import DistillError
from distill.compiler.records.stage import StageMeta
from distill.runtime.build.graph import META, Outcome, Stage, record_finished, run_graph
from distill.runtime.build.run import KEY_FILE, _publish
from distill.runtime.build.worker import require_finished
from tests.runtime.train.project import write_project

MB = 1024 * 1024


class Project:
    """Two stages: ``train`` writes 1 MB of weights, ``export`` copies them; counts their runs."""

    def __init__(self, root: Path) -> None:
        self.state = root / ".distill"
        self.runs: list[str] = []
        self.outcomes: dict[str, Outcome] = {}

    def stages(self) -> list[Stage]:
        def train(folder: Path, up: Mapping[str, Path]) -> dict[str, Any]:
            self.runs.append("train")
            (folder / "model").mkdir(exist_ok=True)  # exist_ok: a resumed run
            (folder / "model" / "model.safetensors").write_bytes(bytes(range(256)) * (MB // 256))
            return {"steps": 1}

        def export(folder: Path, up: Mapping[str, Path]) -> dict[str, Any]:
            self.runs.append("export")
            (folder / "model.gguf").write_bytes((up["train"] / "model" / "model.safetensors").read_bytes())
            return {}

        return [Stage("train", 1, (), lambda: {"seed": 1}, train),
                Stage("export:gguf:Q4_K_M", 1, ("train",), dict, export)]

    def build(self) -> dict[str, Outcome]:
        self.runs.clear()
        self.outcomes = run_graph(self.stages(), self.state, set(), lambda outcome: None)
        return self.outcomes

    def weights(self) -> Path:
        return self.outcomes["train"].folder / "model" / "model.safetensors"


def overwrite_inside(path: Path, offset: int, size: int) -> None:
    """The issue's corruption: bytes overwritten in place, the file's size unchanged."""
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"\0" * size)


def test_a_same_size_overwrite_runs_the_stage_and_its_readers_again(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.build()
    good = project.weights().read_bytes()
    overwrite_inside(project.weights(), 100_000, 400_000)
    outcomes = project.build()
    assert project.runs == ["train", "export"]
    assert outcomes["train"].changed == ["model/model.safetensors"] and not outcomes["train"].cached
    assert project.weights().read_bytes() == good
    assert (outcomes["export:gguf:Q4_K_M"].folder / "model.gguf").read_bytes() == good
    project.build()
    assert project.runs == []  # repaired: cached again


def test_a_missing_or_resized_output_runs_the_stage_again(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.build()
    (project.outcomes["export:gguf:Q4_K_M"].folder / "model.gguf").unlink()
    assert project.build()["export:gguf:Q4_K_M"].changed == ["model.gguf"] and project.runs == ["export"]
    with project.weights().open("ab") as handle:
        handle.write(b"x")
    project.build()
    assert project.runs == ["train", "export"]


def test_a_touched_file_with_the_same_bytes_is_reused_and_its_mtime_recorded(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.build()
    os.utime(project.weights(), ns=(1, 1))  # as `cp -r` without -p leaves it
    assert all(outcome.cached for outcome in project.build().values())
    meta = StageMeta.read(project.outcomes["train"].folder / META)
    assert meta.files["model/model.safetensors"].mtime_ns == 1


@pytest.mark.parametrize("edit", ["older version", "no files", "a size as text"])
def test_a_meta_json_of_another_version_or_shape_runs_the_stage_again(tmp_path: Path, edit: str) -> None:
    """A meta.json that its typed reader refuses (another distill's, or edited) proves nothing about
    the folder: the stage runs again, and what reads it."""
    project = Project(tmp_path)
    project.build()
    meta_path = project.outcomes["train"].folder / META
    meta = json.loads(meta_path.read_text())
    if edit == "older version":
        meta["version"] -= 1
    elif edit == "no files":
        del meta["files"]
    else:
        meta["files"]["model/model.safetensors"]["size"] = "many"
    meta_path.write_text(json.dumps(meta))
    assert project.build()["train"].changed == [META] and project.runs == ["train", "export"]
    assert StageMeta.read(meta_path).files["model/model.safetensors"].size > 0


def test_an_unreadable_meta_json_runs_the_stage_again(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.build()
    (project.outcomes["train"].folder / META).write_bytes(b'{"stage": "tr')
    assert project.build()["train"].changed == [META] and project.runs == ["train", "export"]


def test_a_worker_refuses_a_changed_upstream_naming_the_file(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.build()
    folder = project.outcomes["train"].folder
    require_finished("train", folder, tmp_path / "Distillfile")
    overwrite_inside(project.weights(), 0, 10)
    with pytest.raises(DistillError, match="model/model.safetensors changed since the train stage"):
        require_finished("train", folder, tmp_path / "Distillfile")


def report_outcome(folder: Path, text: str) -> Outcome:
    """A report stage's folder holding ``text``, recorded as finished."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(text)
    stage = Stage("report", 1, (), dict, lambda folder, up: {})
    record_finished(stage, "k" * 64, folder, {}, 0.0, {})
    return Outcome("report", "k" * 64, folder, False, 0.0)


def test_dist_follows_a_report_that_ran_again_with_the_same_key(tmp_path: Path) -> None:
    dist = tmp_path / "dist" / "tiny"
    report = tmp_path / ".distill" / "report" / "kkkk"
    _publish({"report": report_outcome(report, "built from the bad weights\n")}, dist)
    _publish({"report": report_outcome(report, "built again\n")}, dist)  # `build --from export:...`
    assert (dist / "README.md").read_text() == "built again\n"
    assert (dist / KEY_FILE).read_text() == "k" * 64 + "\n"


def test_dist_is_left_alone_when_current_and_repaired_when_changed(tmp_path: Path) -> None:
    dist = tmp_path / "dist" / "tiny"
    outcomes = {"report": report_outcome(tmp_path / "report", "card\n")}
    _publish(outcomes, dist)
    before = (dist / "README.md").stat().st_mtime_ns
    _publish(outcomes, dist)
    assert (dist / "README.md").stat().st_mtime_ns == before  # a no-op rebuild writes nothing
    (dist / "README.md").write_text("edited\n")
    (dist / "extra.txt").write_text("x")
    _publish(outcomes, dist)
    assert (dist / "README.md").read_text() == "card\n" and not (dist / "extra.txt").exists()


def dead_pid() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    return int(child.stdout)


def leftovers(parent: Path, name: str, pid: int) -> list[Path]:
    """What a build killed while publishing left (issue 16): staging folders, one renamed aside."""
    made = [parent / f".{name}.k2j4h5l1.tmp", parent / f".{name}.{pid}.0a1b2c3d.tmp", parent / f".{name}.old-{pid}"]
    for path in made:
        path.mkdir(parents=True)
        (path / "model.gguf").write_bytes(b"\0" * 1000)
    return made


def test_publishing_removes_what_a_killed_publish_left(tmp_path: Path) -> None:
    dist = tmp_path / "dist" / "tiny"
    stale = leftovers(dist.parent, "tiny", dead_pid())
    running = leftovers(dist.parent, "tiny2", os.getpid())[1:]  # another name, and a live writer's: kept
    mine_alive = dist.parent / f".tiny.{os.getpid()}.deadbeef.tmp"
    mine_alive.mkdir()
    _publish({"report": report_outcome(tmp_path / "report", "card\n")}, dist)
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in [*running, mine_alive])


def test_a_resumed_or_reused_stage_folder_loses_its_temp_files(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.build()
    folder = project.outcomes["train"].folder
    stale = [folder / "model" / f".model.safetensors.{dead_pid()}.a1b2c3d4.tmp",
             folder / ".metrics.jsonl.x9y8z7w6.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 100)
    checkpoint = folder / "checkpoints" / f".step-00000003.{dead_pid()}.abcdefgh.tmp"
    checkpoint.mkdir(parents=True)
    assert project.build()["train"].cached
    assert not any(path.exists() for path in [*stale, checkpoint])
    # A stage killed mid-run (no meta.json) is resumed in the same folder, without the leftovers.
    (folder / META).unlink()
    stale[0].write_bytes(b"\0")
    project.build()
    assert project.runs[0] == "train" and not stale[0].exists()



@pytest.mark.slow
def test_the_issue_reproduction_a_corrupted_model_is_not_exported(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 16 as reported, on the tiny training project (about 50 s): the trained weights
    overwritten in place (same size), then ``build --from export:gguf:Q8_0``."""
    distillfile = write_project(tmp_path, deploy=[{"gguf": {"quant": ["Q8_0"]}}])
    assert main(["build", str(distillfile), "--offline"]) == 0
    dist = tmp_path / "dist" / "tiny-train"
    gguf = (dist / "gguf-Q8_0" / "model-Q8_0.gguf").read_bytes()
    weights = next(tmp_path.glob(".distill/train/*/model/model.safetensors"))
    header = 8 + int.from_bytes(weights.read_bytes()[:8], "little")
    overwrite_inside(weights, header, min(400_000, weights.stat().st_size - header))
    capsys.readouterr()
    assert main(["build", str(distillfile), "--offline", "--from", "export:gguf:Q8_0"]) == 0
    assert "  train: done" in capsys.readouterr().err  # ran again, not "cached"
    assert weights.read_bytes() == (dist / "model.safetensors").read_bytes()
    assert (dist / "gguf-Q8_0" / "model-Q8_0.gguf").read_bytes() == gguf  # training is deterministic on the CPU
    exported = next(tmp_path.glob(".distill/export-gguf-Q8_0/*/artifact/model-Q8_0.gguf"))
    assert exported.read_bytes() == gguf
