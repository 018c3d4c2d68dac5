"""Checks of the resolved models that need no weights run in ``distill plan``, located in the
Distillfile, before any stage: pickled weights, a synthesis teacher without a chat template, a
teacher that is the student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.runtime.sources.tokenizer import train_byte_bpe
from tests.planner.test_planner import TINY, run, write

SYNTHESIS = "data: {synthesis: {pairs_per_chunk: 1}}\n"


def _folder(path: Path, weights: str = "model.safetensors", template: bool = True, tokenizer: bool = True) -> Path:
    """A model folder as save_pretrained writes it (the weights' bytes are never read by plan)."""
    path.mkdir(parents=True)
    if tokenizer:
        train_byte_bpe(["The pump runs for twenty minutes."], 300).save(str(path / "tokenizer.json"))
    (path / "config.json").write_text(json.dumps(TINY))
    (path / weights).write_bytes(b"\0" * 16)
    config = {"chat_template": "{{ messages[0]['content'] }}"} if template else {}
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("weights, words", [
    ("pytorch_model.bin", "holds only pickled weights (pytorch_model.bin), which can run code when loaded"),
    ("model.gguf.part", "holds no weights (*.safetensors)"),
])
def test_a_teacher_without_safetensors_is_refused_by_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         weights: str, words: str) -> None:
    _folder(tmp_path / "teacher", weights)
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n", teacher="model: teacher")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 1
    assert f"{path}:7:3: error: teacher.model 'teacher' {words}" in err
    assert not (tmp_path / ".distill").exists()  # nothing ran


def test_a_synthesis_teacher_needs_a_chat_template_at_plan_time(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n" + SYNTHESIS,
                 teacher="random: {config: tiny.json, seed: 1}")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 1
    assert f"{path}:7:3: error: teacher 'tiny.json' has no chat template" in err
    assert "set teacher.chat_template" in err


def test_a_chat_template_jinja_file_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path / "teacher", template=False)
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n" + SYNTHESIS,
                 teacher="model: teacher")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 0, err


def test_a_teacher_that_is_the_student_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _folder(tmp_path / "same")
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n",
                 student="model: same", teacher="model: same")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 0, err
    assert f"{path}:5:3: warning: the student is the teacher ('same')" in err


def test_random_models_with_other_seeds_are_different_models(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n",
                 student="random: {config: tiny.json, seed: 0}", teacher="random: {config: tiny.json, seed: 1}")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 0 and "the student is the teacher" not in err


@pytest.mark.parametrize("change, words", [
    ({"hidden_size": -32}, "hidden must be an integer from 1 to 1048576 (got -32)"),
    ({"hidden_size": "x"}, "TypeError"),
    ({"num_attention_heads": 0}, "ZeroDivisionError"),
    ({"hidden_size": 66}, "hidden size 66 is not a whole number of 4 heads"),
    ({"vocab_size": float("inf")}, "vocab must be an integer from 1 to 16777216 (got inf)"),
    ({"hidden_size": None}, "TypeError"),
    ({"num_key_value_heads": 3}, "4 attention heads cannot be shared by 3 key/value heads"),
])
def test_a_config_that_is_no_model_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             change: dict[str, object], words: str) -> None:
    """Plan arithmetic on a crafted config.json: a located error, never exit 70."""
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n")
    (tmp_path / "tiny.json").write_text(json.dumps({**TINY, **change}))
    code, _, err = run(capsys, "plan", str(path))
    assert code == 1, err
    assert f"{path}:5:12: error: student.model 'tiny.json': its config.json is not a llama config" in err
    assert words in err


def test_a_config_without_a_required_size_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n")
    (tmp_path / "tiny.json").write_text(json.dumps({k: v for k, v in TINY.items() if k != "vocab_size"}))
    code, _, err = run(capsys, "plan", str(path))
    assert code == 1 and "it has no 'vocab_size'" in err


@pytest.mark.parametrize("tokenizer, words", [
    ("garbage", "student tokenizer.json cannot be read"),
    ("[1]", "student tokenizer.json is not a JSON object"),
    ('{"model": 5}', "student tokenizer.json is not a tokenizer the tokenizers library loads"),
])
def test_a_broken_tokenizer_is_found_by_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            tokenizer: str, words: str) -> None:
    (tmp_path / "tok.json").write_text(tokenizer)
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n",
                 student="random: {config: tiny.json, tokenizer: tok.json}")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 1 and words in err


def test_a_student_without_tokenizer_json_is_found_by_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _folder(tmp_path / "student", tokenizer=False)
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n", student="model: student")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 1 and "student.model 'student' has no tokenizer.json" in err


@pytest.mark.parametrize("name", ["tiny.json", "tok.json"])
def test_json_nested_past_the_parser_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n",
                 student="random: {config: tiny.json, tokenizer: tok.json}")
    train_byte_bpe(["The pump runs."], 300).save(str(tmp_path / "tok.json"))
    (tmp_path / name).write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run(capsys, "plan", str(path))
    assert code == 1 and "cannot be read" in err


def test_declared_vram_ignored_by_an_auto_cpu_plan_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17 (7): device auto on a host without a GPU plans for the CPU; the declared vram
    must not be dropped silently."""
    monkeypatch.setattr("distill.compiler.hardware._probe_gpus", lambda: [])
    path = write(tmp_path, "loss: {mask: all}\nhardware: {device: auto, vram: 8GiB, ram: 2GiB}\n")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 0, err
    assert f"{path}:7:26: warning: no GPU found here: device auto plans for the CPU, so the declared vram " \
           "is ignored (planned for 2.0 GiB of RAM, declared hardware.ram)" in err
