"""Build mechanics end to end and offline, on a toy two-step project (tests/fixtures/toy-quickstart:
a 4-layer teacher trained from scratch on the quickstart's guide, then a 2-layer student distilled
from it, in about a minute): build the teacher and the student, rebuild (nothing runs), change a
deploy target (only the exports and what reads them run), clean what no plan uses, kill a build
mid-training and resume it, refuse a stale lock under --locked and a second concurrent build."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.compiler.cli import main

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"  # its guide, PDF maker and QA pairs
TOY = REPO / "tests" / "fixtures" / "toy-quickstart"  # the two Distillfiles and the models' configs
DISTILL = [sys.executable, "-m", "distill.compiler.cli"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy project (the quickstart's sources, the toy's Distillfiles) with the PDF made and the
    teacher built."""
    root = tmp_path_factory.mktemp("quickstart")
    for name in ("guide.md", "make_pdf.py", "qa.jsonl"):
        shutil.copy(QUICKSTART / name, root / name)
    shutil.copytree(TOY, root, dirs_exist_ok=True)
    subprocess.run([sys.executable, str(root / "make_pdf.py")], check=True)
    assert main(["build", str(root / "teacher.Distillfile"), "--offline"]) == 0
    return root


def stage_runs(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """``stage -> cached | done`` from the build's progress lines."""
    found = re.findall(r"^  (\S+): (cached|done in)", capsys.readouterr().err, flags=re.M)
    return {name: "cached" if state == "cached" else "done" for name, state in found}


def test_the_quickstart_builds_rebuilds_and_resumes(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    distillfile = project / "Distillfile"
    # A build killed once its training has written a checkpoint (the teacher's training has its own)...
    teacher_training = set(project.glob(".distill/train/*"))
    child = subprocess.Popen([*DISTILL, "build", str(distillfile), "--offline"], cwd=project,
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not [p for p in project.glob(".distill/train/*/checkpoints/step-*/loop.json")
                                               if p.parents[2] not in teacher_training]:
        assert child.poll() is None, "the build ended before training checkpointed"
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert not (project / "dist" / "quickstart").exists()
    # ...resumes: finished stages are cached, training continues from its checkpoint.
    capsys.readouterr()
    assert main(["build", str(distillfile), "--offline"]) == 0
    runs = stage_runs(capsys)
    assert runs["extract"] == runs["synthesize"] == "cached" and runs["train"] == "done"
    training = next(p for p in project.glob(".distill/train/*") if p not in teacher_training)
    metrics = (training / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics if "loss" in line][0] == 1  # history kept across the kill

    dist = project / "dist" / "quickstart"
    report = json.loads((dist / "report.json").read_text())
    names = [m["name"] for m in report["evaluation"]["models"]]
    assert names == ["teacher", "student", "gguf:Q4_K_M", "onnx:int8"]
    assert (dist / "gguf-Q4_K_M" / "model-Q4_K_M.gguf").is_file() and (dist / "onnx-int8" / "model.onnx").is_file()
    assert all(check["passed"] for a in report["artifacts"] for check in a["manifest"]["verification"])
    assert "| gguf:Q4_K_M |" in (dist / "README.md").read_text()
    record = json.loads((dist / "build.json").read_text())
    assert record["outputs"]["gguf-Q4_K_M/model-Q4_K_M.gguf"]
    assert "build" not in json.loads((project / "Distillfile.lock").read_text())  # the lock pins inputs only

    # A rebuild runs nothing and leaves dist/ untouched.
    before = (dist / "README.md").stat().st_mtime_ns
    assert main(["build", str(distillfile), "--offline", "--locked"]) == 0
    assert set(stage_runs(capsys).values()) == {"cached"}
    assert (dist / "README.md").stat().st_mtime_ns == before

    # Another GGUF quant: only that export and what reads it run again.
    distillfile.write_text(distillfile.read_text().replace("quant: [Q4_K_M]", "quant: [Q8_0]"))
    assert main(["build", str(distillfile), "--offline"]) == 0
    runs = stage_runs(capsys)
    assert {name for name, state in runs.items() if state == "done"} == {"export:gguf:Q8_0", "evaluate", "report"}
    assert (dist / "gguf-Q8_0" / "model-Q8_0.gguf").is_file() and not (dist / "gguf-Q4_K_M").exists()
    notes = json.loads((dist / "report.json").read_text())["evaluation"]["notes"]
    reused = {note.split(": measured")[0] for note in notes if "measured by an earlier build" in note}
    assert reused == {"teacher", "student", "onnx:int8"}  # only the new GGUF was measured

    # A finished training keeps its merged model only: no checkpoints, best or trainable copies.
    for training in project.glob(".distill/train/*"):
        assert sorted(p.name for p in training.glob("*.safetensors")) == [] and not (training / "checkpoints").exists()
    # clean removes what neither plan uses (the Q4_K_M export, the first evaluation and report)
    # and keeps the teacher's build, which dist/quickstart-teacher/build.json names.
    assert main(["clean", str(distillfile), "--dry-run"]) == 0
    assert list((project / ".distill" / "export-gguf-Q4_K_M").glob("*/meta.json"))
    assert main(["clean", str(distillfile)]) == 0
    out = capsys.readouterr().out
    assert "removed 3 stage output(s)" in out and "export-gguf-Q4_K_M/" in out, out
    assert not list((project / ".distill" / "export-gguf-Q4_K_M").glob("*/meta.json"))
    for built in (distillfile, project / "teacher.Distillfile"):
        assert main(["build", str(built), "--offline"]) == 0
        assert set(stage_runs(capsys).values()) == {"cached"}


def test_locked_builds_refuse_a_stale_lock_and_builds_do_not_overlap(project: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    distillfile = project / "teacher.Distillfile"
    (project / "qa.jsonl").write_text((project / "qa.jsonl").read_text() + "\n")
    assert main(["build", str(distillfile), "--offline", "--locked"]) == 5
    assert "sources.qa.jsonl.sha256: " in capsys.readouterr().err
    state = project / ".distill"
    with (state / "build.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["build", str(distillfile), "--offline"]) == 9
    assert "another distill build of this Distillfile is running" in capsys.readouterr().err
