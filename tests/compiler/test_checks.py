"""One passing and one failing Distillfile per meaning rule: each rule fires when it should and
only then."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from distill.compiler.errors import SpecError
from distill.compiler.frontend import compile_file
from tests.conftest import DELETE, with_overrides

TEACHER = {"model": "org/teacher", "revision": "4567ef"}
QA_TEACHER = {"teacher": TEACHER, "data": {"synthesis": {}}, "loss": {"mask": "answer_only"}}
CUT = {"teacher": TEACHER, "student": {"from_teacher": {"layers": [0, 2, 5]}}}

# rule: (overrides that pass, overrides that fail, words the failure message contains)
RULES: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "glob must match": ({"sources": [{"text": "docs/*.md"}]},
                        {"sources": [{"text": "docs/*.txt"}]}, "matches no files"),
    "paths stay inside": ({"sources": [{"text": "./docs/../docs/*.md"}]},
                          {"sources": [{"text": "../*.md"}]}, "points outside"),
    "glob must match files": ({"sources": [{"text": "docs/*"}]},
                              {"sources": [{"text": "models/*"}]}, "matches only folders"),
    "loss weights above zero": ({"loss.ce": {"weight": 0.1}}, {"loss.ce": {"weight": 0}},
                                "sum to 0"),
    "kl needs a teacher": ({"teacher": TEACHER, "loss.kl": {}}, {"loss.kl": {}}, "needs a teacher"),
    "hidden needs a teacher": ({"teacher": TEACHER, "loss.hidden": {}}, {"loss.hidden": {}},
                               "needs a teacher"),
    "qlora needs a 4-bit base": ({"student.adapter": {"type": "qlora"}},
                                 {"student.adapter": {"type": "qlora"}, "student.quantization": "8bit"},
                                 "needs a 4-bit base"),
    "lora on 4-bit is qlora": ({"student.quantization": "4bit", "student.adapter": {"type": "qlora"}},
                               {"student.quantization": "4bit"}, "is QLoRA"),
    "quantized weights are not fully trained": (
        {"student.adapter": {"type": "none"}},
        {"student.adapter": {"type": "none"}, "student.quantization": "8bit"}, "cannot be fully"),
    "gguf needs causal-lm": (
        {"deploy": [{"gguf": {}}]},
        {"deploy": [{"gguf": {}}], "student.task": "extractive-qa",
         "sources": [{"dataset": "docs/qa.jsonl"}]}, "gguf needs a causal-lm"),
    "one target per kind": ({"deploy": [{"gguf": {}}, {"onnx": {}}]},
                            {"deploy": [{"onnx": {}}, {"onnx": {"quant": "int8"}}]}, "a second onnx"),
    "overlap below chunk": ({"data.overlap_tokens": 63, "data.chunk_tokens": 64},
                            {"data.overlap_tokens": 64, "data.chunk_tokens": 64}, "must be smaller"),
    "a train split remains": ({"data.split": {"val": 0.5, "test": 0.4}},
                              {"data.split": {"val": 0.5, "test": 0.5}}, "nothing to train on"),
    "synthesis needs a teacher": (QA_TEACHER, {**QA_TEACHER, "teacher": DELETE},
                                  "needs a teacher to write"),
    "synthesis needs documents": (QA_TEACHER, {**QA_TEACHER, "sources": [{"dataset": "docs/qa.jsonl"}]},
                                  "needs pdf or text sources"),
    "prompt has {chunk}": ({**QA_TEACHER, "data.synthesis": {"prompt": "Ask {n} about {chunk}"}},
                           {**QA_TEACHER, "data.synthesis": {"prompt": "Ask {n} questions"}},
                           "must contain {chunk}"),
    "prompt braces": ({**QA_TEACHER, "data.synthesis": {"prompt": "{{json}} {chunk}"}},
                      {**QA_TEACHER, "data.synthesis": {"prompt": "{json {chunk}"}},
                      "not a valid template"),
    "extractive-qa learns from qa": (
        {**QA_TEACHER, "student.task": "extractive-qa"},
        {**QA_TEACHER, "student.task": "extractive-qa", "data.synthesis": {"kind": "conversation"}},
        "not conversations"),
    "extractive-qa needs QA examples": (
        {"student.task": "extractive-qa", "sources": [{"dataset": "docs/qa.jsonl"}]},
        {"student.task": "extractive-qa"}, "needs QA examples"),
    "answer_only needs QA": ({"loss.mask": "all"}, {"loss.mask": "answer_only"},
                             "needs QA examples"),
    "paraphrases need a teacher": ({"data.augmentation": {"typo_rate": 0.05}},
                                   {"data.augmentation": {"paraphrases": 2}}, "written by the teacher"),
    "batch is a multiple": ({"train.effective_batch_size": 12, "train.micro_batch_size": 4},
                            {"train.effective_batch_size": 10, "train.micro_batch_size": 4},
                            "not a multiple"),
    "batch counts processes": ({"train.effective_batch_size": 16, "train.micro_batch_size": 4,
                                "hardware.gpus": 2},
                               {"train.effective_batch_size": 12, "train.micro_batch_size": 4,
                                "hardware.gpus": 2}, "4 x 2 = 8"),
    "batch splits over processes": ({"train.effective_batch_size": 12, "hardware.gpus": 3},
                                    {"train.effective_batch_size": 12, "hardware.gpus": 5},
                                    "not a multiple of the 5 processes"),
    "early stopping needs val": ({"train.early_stopping": {}},
                                 {"train.early_stopping": {}, "data.split": {"val": 0}},
                                 "needs a validation split"),
    "fp16 needs a gpu": ({"train.precision": "fp16", "hardware.device": "cuda"},
                         {"train.precision": "fp16", "hardware.device": "cpu"}, "needs a GPU"),
    "paged optimizers need cuda": ({"train.optimizer": "paged_adamw_8bit"},
                                   {"train.optimizer": "paged_adamw_8bit", "hardware.device": "cpu"},
                                   "page CUDA memory"),
    "8-bit optimizer needs cuda": ({"train.optimizer": "adamw_8bit", "hardware.device": "cuda"},
                                   {"train.optimizer": "adamw_8bit", "hardware.device": "cpu"},
                                   "8-bit states on a GPU"),
    "gate needs its metric": ({"eval": {"metrics": ["perplexity"], "gates": {"max_perplexity": 9}}},
                              {"eval": {"metrics": ["size"], "gates": {"max_perplexity": 9}}},
                              "needs metric perplexity"),
    "metric fits the task": (
        {"student.task": "extractive-qa", "sources": [{"dataset": "docs/qa.jsonl"}],
         "eval.metrics": ["f1"]},
        {"student.task": "extractive-qa", "sources": [{"dataset": "docs/qa.jsonl"}],
         "eval.metrics": ["rouge_l"]}, "applies to causal-lm"),
    "retention needs a teacher": ({"teacher": TEACHER, "eval.gates": {"min_retention": 0.9}},
                                  {"eval.gates": {"min_retention": 0.9}}, "compares with a teacher"),
    "gates need a test split": ({"eval.gates": {"max_size": "1GiB"}},
                                {"eval.gates": {"max_size": "1GiB"}, "data.split": {"test": 0}},
                                "need a test split"),
    "local model has config": ({"student": {"model": "./models/ok"}},
                               {"student": {"model": "./models/bare"}}, "has no config.json"),
    "local model exists": ({"student": {"model": "./models/ok"}},
                           {"student": {"model": "./models/nope"}}, "does not exist"),
    "hub id shape": ({"student": {"model": "org/name", "revision": "abc"}},
                     {"student": {"model": "org name!", "revision": "abc"}}, "neither a local folder"),
    "revision is for hub models": ({"student": {"model": "./models/ok"}},
                                   {"student": {"model": "./models/ok", "revision": "abc"}},
                                   "hub models only"),
    "random config exists": ({"student": {"random": {"config": "models/ok/config.json"}}},
                             {"student": {"random": {"config": "models/ok/nope.json"}}},
                             "does not exist"),
    "random tokenizer folder": ({"student": {"random": {"config": "models/ok", "tokenizer": "tok"}}},
                                {"student": {"random": {"config": "models/ok", "tokenizer": "models/bare"}}},
                                "has no tokenizer.json"),
    "chat template parses": ({"student.chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"},
                             {"student.chat_template": "{{ unclosed"}, "not a valid Jinja"),
    "from_teacher needs a teacher": (CUT, {**CUT, "teacher": DELETE}, "needs a teacher to cut"),
    "from_teacher needs saved weights": (CUT, {**CUT, "teacher": {"random": {"config": "models/ok"}}},
                                         "teacher.random has none"),
    "from_teacher is a causal LM": (
        {**CUT, "student.task": "causal-lm"},
        {**CUT, "student.task": "extractive-qa", "sources": [{"dataset": "docs/qa.jsonl"}]},
        "keeps a causal LM's decoder layers"),
    "from_teacher layers increase": (CUT, {**CUT, "student.from_teacher.layers": [0, 5, 2]},
                                     "layers[2] is layer 2, below layer 5"),
    "from_teacher layers once": ({**CUT, "student.from_teacher.layers": {"every": 3}},
                                 {**CUT, "student.from_teacher.layers": [0, 2, 2]}, "layers[2] repeats layer 2"),
    "from_teacher has the teacher's revision": (CUT, {**CUT, "student.revision": "abc"}, "hub models only"),
    "chat template file exists": ({"student.chat_template": "chat.jinja"},
                                  {"student.chat_template": "missing.jinja"}, "does not exist"),
}


@pytest.fixture
def folder(project: Callable[[dict[str, Any] | str], Path]) -> Callable[[dict[str, Any]], Path]:
    """The project fixture plus a QA dataset, model folders, a tokenizer and a chat template."""
    def write(data: dict[str, Any]) -> Path:
        path = project(data)
        root = path.parent
        (root / "docs" / "qa.jsonl").write_text('{"question": "q", "answers": ["a"], "context": "a"}\n')
        (root / "models" / "ok").mkdir(parents=True, exist_ok=True)
        (root / "models" / "ok" / "config.json").write_text("{}")
        (root / "models" / "bare").mkdir(exist_ok=True)
        (root / "tok").mkdir(exist_ok=True)
        (root / "tok" / "tokenizer.json").write_text("{}")
        (root / "chat.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
        return path
    return write


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_passes(rule: str, min_spec: dict[str, Any], folder: Callable[[dict[str, Any]], Path]) -> None:
    passing, _, _ = RULES[rule]
    compiled = compile_file(folder(with_overrides(min_spec, passing)))
    assert compiled.spec.name == "tiny"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_fails(rule: str, min_spec: dict[str, Any], folder: Callable[[dict[str, Any]], Path]) -> None:
    _, failing, words = RULES[rule]
    with pytest.raises(SpecError) as raised:
        compile_file(folder(with_overrides(min_spec, failing)))
    messages = [d.message for d in raised.value.diagnostics if d.severity == "error"]
    assert any(words in m for m in messages), messages


def test_unpinned_hub_model_is_a_warning_not_an_error(min_spec: dict[str, Any],
                                                     folder: Callable[[dict[str, Any]], Path]) -> None:
    compiled = compile_file(folder(with_overrides(min_spec, {"student.revision": DELETE})))
    assert [w.message for w in compiled.warnings] == [
        "student.model 'org/student' has no pinned revision"]
    assert compiled.warnings[0].severity == "warning"


def test_symlink_out_of_the_folder_is_refused(min_spec: dict[str, Any], tmp_path: Path,
                                              folder: Callable[[dict[str, Any]], Path]) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.md"
    outside.write_text("secret")
    (tmp_path / "docs" / "link.md").symlink_to(outside)
    with pytest.raises(SpecError, match="1 error") as raised:
        compile_file(folder(min_spec))
    assert "(a link)" in raised.value.diagnostics[0].message
