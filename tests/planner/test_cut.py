"""A student cut from its teacher, at plan time: the layers a ``from_teacher`` keeps, the config it
resolves to, the refusals located in the Distillfile, and what ``distill plan`` and the lock say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill.compiler.codec import build_spec
from distill.compiler.cut import cut_config, kept_layers
from distill.compiler.pipeline import plan_file
from distill.compiler.planner import UTILIZATION
from distill.compiler.resolve import resolve_models
from distill.compiler.spec import EveryLayer
from distill.runtime.sources.tokenizer import train_byte_bpe
from tests.conftest import FIXTURE_CONFIGS
from tests.planner.test_planner import TINY, run, write

TEACHER = {**TINY, "num_hidden_layers": 4, "tie_word_embeddings": True}
PLAN = "loss: {mask: all}\nhardware: {device: cpu, ram: 2GiB}\n"


def _teacher(folder: Path, config: dict[str, Any]) -> Path:
    """A model folder as plan sees it: config, tokenizer and (unread) safetensors weights."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    train_byte_bpe(["The pump runs for twenty minutes."], 300).save(str(folder / "tokenizer.json"))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    return folder


def _resolve(tmp_path: Path, config: dict[str, Any], layers: Any) -> Any:
    _teacher(tmp_path / "teacher", config)
    spec = build_spec({"version": 1, "name": "t", "sources": [{"text": "*.md"}], "teacher": {"model": "teacher"},
                       "student": {"from_teacher": {"layers": layers}}})
    return resolve_models(spec, tmp_path, offline=True)


@pytest.mark.parametrize(("every", "count", "kept"), [
    (2, 5, (0, 2, 4)), (2, 6, (0, 2, 4, 5)), (1, 3, (0, 1, 2)), (7, 4, (0, 3)), (3, 1, (0,)),
])
def test_every_nth_layer_and_always_the_last(every: int, count: int, kept: tuple[int, ...]) -> None:
    assert kept_layers(EveryLayer(every), count) == kept


def test_the_student_resolves_to_the_teachers_config_cut(tmp_path: Path) -> None:
    config = {**json.loads((FIXTURE_CONFIGS / "qwen3-0.6b" / "config.json").read_text()), "num_hidden_layers": 4,
              "layer_types": ["full_attention", "sliding_attention", "full_attention", "sliding_attention"]}
    models = _resolve(tmp_path, config, [1, 2])
    teacher, student = models["teacher"], models["student"]
    assert student.kind == "cut" and student.ref == "teacher, layers 1,2" and student.layers == (1, 2)
    assert student.config == {**config, "num_hidden_layers": 2,
                              "layer_types": ["sliding_attention", "full_attention"]}
    # the teacher's files, tokenizer and folder: one vocabulary, so KD compares logits directly
    assert (student.files, student.tokenizer, student.folder, student.revision) == (
        teacher.files, teacher.tokenizer, teacher.folder, teacher.revision)
    assert student.cut_from == teacher and student.role == "student"


def test_every_2_of_6_layers_keeps_0_2_4_5(tmp_path: Path) -> None:
    student = _resolve(tmp_path, {**TEACHER, "num_hidden_layers": 6}, {"every": 2})["student"]
    assert student.layers == (0, 2, 4, 5) and student.config["num_hidden_layers"] == 4


def test_a_layer_kind_the_config_implies_is_written_out(tmp_path: Path) -> None:
    """Gemma 2 alternates sliding and global layers by index, with no layer_types in its
    config.json: kept layers 1 (global) and 2 (sliding) must keep their kinds at indices 0 and 1."""
    config = json.loads((FIXTURE_CONFIGS / "gemma-2-2b-it" / "config.json").read_text())
    student = _resolve(tmp_path, config, [1, 2])["student"]
    assert student.config["layer_types"] == ["full_attention", "sliding_attention"]


def test_token_ids_as_long_as_the_layer_count_are_no_per_layer_list() -> None:
    config = {"model_type": "qwen2", "num_hidden_layers": 2, "eos_token_id": [1, 2],
              "layer_types": ["full_attention", "sliding_attention"]}
    assert cut_config(config, (1,)) == {"model_type": "qwen2", "num_hidden_layers": 1, "eos_token_id": [1, 2],
                                        "layer_types": ["sliding_attention"]}


def test_plan_shows_the_cut_and_the_lock_pins_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _teacher(tmp_path / "teacher", TEACHER)
    path = write(tmp_path, PLAN, student="from_teacher: {layers: [0, 2]}", teacher="model: teacher")
    code, out, err = run(capsys, "plan", str(path))
    assert code == 0, err
    teacher_line = next(line for line in out.splitlines() if line.startswith("  teacher "))
    student_line = next(line for line in out.splitlines() if line.startswith("  student "))
    assert student_line.startswith("  student teacher, layers 0,2: llama, ")
    params = int(student_line.split(", ")[2].split(" params")[0].replace(",", ""))
    assert 0 < params < int(teacher_line.split("llama, ")[1].split(" params")[0].replace(",", ""))
    assert "student layers" in out and "the student is the teacher" not in err
    decision = next(d for d in plan_file(path).plan.decisions if d.name == "student layers")
    assert decision.value == "0,2" and "2 of the teacher's 4 decoder layers" in decision.why
    student = json.loads((tmp_path / "Distillfile.lock").read_text())["models"]["student"]
    assert (student["kind"], student["ref"]) == ("cut", "teacher, layers 0,2")
    assert run(capsys, "plan", "--check", str(path))[0] == 0


def test_a_layer_the_teacher_lacks_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _teacher(tmp_path / "teacher", TEACHER)
    path = write(tmp_path, PLAN, student="from_teacher:\n    layers:\n      - 0\n      - 4\n      - 9",
                 teacher="model: teacher")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 1
    assert (f"{path}:8:9: error: student.from_teacher.layers names layer(s) 4, 9, but teacher 'teacher' has "
            "4 layers (0 to 3)") in err
    assert "list layers 0 to 3, or write `layers: {every: n}`" in err


def test_a_teacher_whose_layers_cannot_be_cut_is_refused_at_plan_time(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _teacher(tmp_path / "teacher", json.loads((FIXTURE_CONFIGS / "distilgpt2" / "config.json").read_text()))
    path = write(tmp_path, PLAN, student="from_teacher: {layers: [0]}", teacher="model: teacher")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 1
    assert (f"{path}:5:3: error: student.from_teacher cannot cut teacher 'teacher': its model_type 'gpt2' is "
            "not one whose decoder layers distill can cut (llama, mistral, qwen2, qwen3, gemma, gemma2, "
            "gemma3_text, phi3)") in err


def test_keeping_every_layer_is_the_teacher_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _teacher(tmp_path / "teacher", TEACHER)
    path = write(tmp_path, PLAN, student="from_teacher: {layers: {every: 1}}", teacher="model: teacher")
    code, _, err = run(capsys, "plan", str(path))
    assert code == 0, err
    assert f"{path}:5:18: warning: student.from_teacher keeps every layer of the teacher" in err


def test_a_ce_only_baseline_is_a_second_training_in_the_estimates(tmp_path: Path) -> None:
    _teacher(tmp_path / "teacher", TEACHER)
    kd = "loss: {mask: all, kl: {weight: 1.0}}\nhardware: {device: cpu, ram: 2GiB, tflops: 0.1}\n"
    path = write(tmp_path, kd + "eval: {baselines: [ce_only]}\n", student="from_teacher: {layers: [0, 2]}",
                 teacher="model: teacher")
    estimates = {e.stage: e for e in plan_file(path).plan.estimates}
    train, alone = estimates["train"], estimates["train:ce_only"]
    # The same steps without the teacher's forward passes.
    assert 0 < alone.flops < train.flops and "teacher" not in alone.why and "teacher forward" in train.why
    assert alone.seconds == pytest.approx(alone.flops / (0.1e12 * UTILIZATION))
