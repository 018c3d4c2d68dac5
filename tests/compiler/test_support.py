"""Support checked at plan time: a model that the planner, the GGUF or the ONNX backend cannot
take is a located error (exit 1) naming the model, the target and what would work, before any
stage runs; the README's support matrix is the declarations' own output."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from distill.compiler.cli import main
from distill.compiler.support import support_matrix
from tests.conftest import FIXTURE_CONFIGS, REPO

LLAMA = json.loads((FIXTURE_CONFIGS / "llama-3.2-1b" / "config.json").read_text())


def _project(tmp_path: Path, config: dict[str, Any], deploy: str, task: str = "",
             tokenizer: str = "") -> Path:
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "a.md").write_text("The pump runs for twenty minutes.\n" * 50)
    (tmp_path / "student.json").write_text(json.dumps(config))
    path = tmp_path / "Distillfile"
    path.write_text(
        "version: 1\nname: p\nsources: [{text: docs/*.md}]\n"
        f"student:\n  random: {{config: student.json{tokenizer}}}\n{task}"
        "loss: {mask: all}\n"
        "hardware: {device: cpu, ram: 16GiB}\n"
        f"deploy:\n{deploy}")
    return path


def _plan(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["plan", str(path)])
    return code, capsys.readouterr().err


def test_a_rope_scaling_gguf_cannot_take_is_located_at_the_target(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    yarn = dict(LLAMA, rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                     "original_max_position_embeddings": 8192})
    path = _project(tmp_path, yarn, "  - onnx: {quant: none}\n  - gguf: {quant: [Q4_K_M]}\n")
    code, err = _plan(path, capsys)
    assert code == 1
    line = path.read_text().splitlines().index("  - gguf: {quant: [Q4_K_M]}") + 1
    assert re.search(rf"Distillfile:{line}:\d+: error: gguf cannot take student 'student.json': "
                     r"rope_scaling 'yarn'", err), err
    assert "hint: deploy this student to onnx instead" in err
    assert not (tmp_path / "Distillfile.lock").exists()


def test_a_family_no_part_takes_is_refused_at_the_student(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    falcon = {"model_type": "falcon", "architectures": ["FalconForCausalLM"], "hidden_size": 64}
    code, err = _plan(_project(tmp_path, falcon, "  - gguf: {quant: [Q4_K_M]}\n"), capsys)
    assert code == 1
    assert "error: student.model 'student.json': model_type 'falcon' is not supported by the planner" in err
    assert "hint: supported: llama, mistral, qwen2, qwen3" in err


def test_an_onnx_rope_it_cannot_trace_is_refused_with_gguf_as_the_way_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dynamic = dict(LLAMA, rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    code, err = _plan(_project(tmp_path, dynamic, "  - onnx: {quant: int8}\n"), capsys)
    assert code == 1
    assert "onnx cannot take student 'student.json': onnx: rope_scaling type 'dynamic'" in err
    # GGUF takes no dynamic rope either, so the hint names the support matrix instead.
    assert "hint: pick a student the onnx backend takes" in err


def test_a_unigram_tokenizer_is_refused_for_gguf_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tokenizers import Tokenizer, models

    Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], 0)).save(
        str(tmp_path / "tokenizer.json"))
    config = dict(LLAMA, vocab_size=3)
    path = _project(tmp_path, config, "  - gguf: {quant: [Q8_0]}\n", tokenizer=", tokenizer: tokenizer.json")
    code, err = _plan(path, capsys)
    assert code == 1
    assert "gguf cannot take student 'student.json': the gguf backend writes BPE tokenizers" in err
    assert "this one is Unigram" in err


def test_without_llama_cpp_s_converter_gguf_is_refused_before_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_LLAMA_CPP_CONVERTER", str(tmp_path / "nowhere"))
    code, err = _plan(_project(tmp_path, LLAMA, "  - gguf: {quant: [Q4_K_M]}\n"), capsys)
    assert code == 1
    assert "llama.cpp's converter is not in" in err and "scripts/setup.sh" in err


def test_an_extractive_qa_student_is_asked_about_its_task(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # distilbert-base-uncased names its pretraining head; the student trained is a QA model.
    config = json.loads((FIXTURE_CONFIGS / "distilbert-base-uncased" / "config.json").read_text())
    path = _project(tmp_path, config, "  - onnx: {quant: int8}\n", task="  task: extractive-qa\n")
    squad = REPO / "examples" / "extractive-qa" / "data" / "squad-sample.json"
    (tmp_path / "squad.json").write_bytes(squad.read_bytes())
    path.write_text(path.read_text().replace("[{text: docs/*.md}]", "[{dataset: squad.json, format: squad}]")
                    .replace("loss: {mask: all}", "loss: {ce: {weight: 1.0}}"))
    assert main(["plan", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("name", ["llama-3.2-1b", "qwen3-0.6b", "gemma-3-1b-it", "mistral-7b-v0.3",
                                  "qwen2.5-0.5b", "phi-3-mini-4k-instruct", "gemma-2-2b-it"])
def test_the_families_users_pick_plan_for_both_targets(name: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = json.loads((FIXTURE_CONFIGS / name / "config.json").read_text())
    path = _project(tmp_path, config, "  - gguf: {quant: [Q4_K_M]}\n  - onnx: {quant: none}\n")
    path.write_text(path.read_text().replace("ram: 16GiB", "ram: 256GiB"))
    assert main(["plan", str(path)]) == 0, capsys.readouterr().err


def test_the_readme_support_matrix_is_generated() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- support matrix: generated -->\n", 1)[1].split("<!-- end support matrix -->", 1)[0]
    assert block == support_matrix() + "\n", "run `python -m distill.compiler.support` into the README"
