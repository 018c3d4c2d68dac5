"""evaluate() end to end: teacher + student (HF) + an F16 GGUF of the student on a 3-example split;
a teacher with another tokenizer; an extractive-QA student and its ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from distill.compiler.records.evaluation import Evaluation
from distill.compiler.records.examples import Example
from distill.compiler.records.record import lines_text, read_lines
from distill.compiler.spec import Eval, Gates
from distill.runtime.evaluate import Candidate, check_gates, evaluate, stage
from distill.runtime.placement import Placement
from distill.runtime.sources.tokenizer import train_byte_bpe

from .conftest import RECORDS, TEXT

MAX_NEW = 8
CPU = Placement("cpu", "float32", "fp32")  # what these tests compare against: fp32 torch
THREADS = 1  # the tests share 2 cores with whatever else runs; one thread per runtime keeps them steady


@pytest.fixture(autouse=True)
def short_latency_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage, "LATENCY_TOKENS", 4)  # 32 in a build; 4 still times the decode loop


def test_teacher_student_and_gguf(models: dict[str, Path], gguf_f16: Path, test_split: Path, tmp_path: Path) -> None:
    candidates = [Candidate("teacher", "hf", models["teacher"], models["teacher"], CPU),
                  Candidate("student", "hf", models["student"], models["student"], CPU),
                  Candidate("gguf:F16", "gguf", gguf_f16, models["student"])]
    result = evaluate(candidates, test_split, "causal-lm", Eval(), tmp_path, max_new_tokens=MAX_NEW,
                      threads=THREADS)
    assert Evaluation.read(tmp_path / "evaluation.json") == result
    assert result.examples == 3 and result.task == "causal-lm"
    assert (result.decoding.greedy, result.decoding.max_new_tokens, result.decoding.threads) == (True, MAX_NEW, THREADS)
    by = {m.name: m for m in result.models}
    assert list(by) == ["teacher", "student", "gguf:F16"]
    for model in by.values():
        assert set(model.metrics) == {"perplexity", "token_f1", "rouge_l", "latency_ms", "tokens_per_s"}
        assert model.metrics["perplexity"] > 1 and model.metrics["latency_ms"] > 0
    student, gguf = by["student"], by["gguf:F16"]
    assert student.precision == "float32" and gguf.precision == "F16"
    assert student.size_bytes == sum(f.stat().st_size for f in models["student"].glob("*.safetensors"))
    assert gguf.size_bytes == gguf_f16.stat().st_size
    assert student.params == gguf.params == sum(
        p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(models["student"]).parameters())
    assert gguf.metrics["perplexity"] == pytest.approx(student.metrics["perplexity"], rel=0.01)
    # same tokenizer everywhere: perplexity retention against the teacher for both others
    assert set(result.retention) == {"student", "gguf:F16"}
    ratio = result.retention["student"]["perplexity"]
    assert ratio == pytest.approx(by["teacher"].metrics["perplexity"] / student.metrics["perplexity"])
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 3 * 2  # the document record asks nothing
    assert {p["reference"] for p in predictions} == {"It moves water.", "20 minutes"}
    assert not any("not measured" in note or "not scored" in note for note in result.notes)
    gates = check_gates(result, Gates(max_perplexity=1e9, max_size=10**9), deployed=["gguf:F16"])
    assert all(g.passed for g in gates) and {g.model for g in gates} == {"gguf:F16"}


def test_an_open_book_teacher_reads_each_question_with_its_text(models: dict[str, Path], test_split: Path,
                                                                   tmp_path: Path) -> None:
    from distill.runtime.evaluate.cases import OPEN_BOOK, prepare

    candidates = [Candidate("teacher", "hf", models["teacher"], models["teacher"], CPU, open_book=True),
                  Candidate("student", "hf", models["student"], models["student"], CPU)]
    result = evaluate(candidates, test_split, "causal-lm", Eval(), tmp_path, max_new_tokens=MAX_NEW, threads=THREADS)
    records = read_lines(test_split, Example)
    tokenizer = transformers.AutoTokenizer.from_pretrained(models["teacher"])
    asked = prepare(models["teacher"], records, "causal-lm", 256, open_book=True)
    first = tokenizer.decode(asked.cases[0].prompt)
    assert OPEN_BOOK.format(context="The pump moves water.", question="What does the pump do?") in first
    closed = prepare(models["teacher"], records, "causal-lm", 256)
    assert "The pump moves water." not in tokenizer.decode(closed.cases[0].prompt)
    # The document record asks nothing and is scored the same either way.
    assert asked.cases[2].scored == closed.cases[2].scored and asked.cases[2].prompt is None
    # Open-book perplexity is over other rows: no perplexity retention, said why; F1 is compared.
    assert "perplexity" not in result.retention["student"]
    assert any("open book" in note for note in result.notes)
    assert "token_f1" in result.retention["student"] or any("token_f1 0" in note for note in result.notes)
    # The samples show each generated question with every model's answer, as predictions.jsonl has them.
    predictions = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [s.id for s in result.samples] == ["a", "b"]
    for sample in result.samples:
        assert sample.answers == {p["model"]: p["prediction"] for p in predictions if p["id"] == sample.id}
        assert list(sample.answers) == ["teacher", "student"]
    assert result.samples[0].question == "What does the pump do?"
    assert result.samples[0].reference == "It moves water."


def test_teacher_with_another_tokenizer(models: dict[str, Path], test_split: Path, tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=train_byte_bpe(TEXT[:1], 290),
                                                     eos_token="<|endoftext|>")
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    tokenizer.save_pretrained(teacher)
    torch.manual_seed(2)
    config = transformers.AutoConfig.for_model("llama", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=2, vocab_size=len(tokenizer),
                                               max_position_embeddings=256)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(teacher)
    candidates = [Candidate("teacher", "hf", teacher, teacher, CPU),
                  Candidate("student", "hf", models["student"], models["student"], CPU)]
    result = evaluate(candidates, test_split, "causal-lm", Eval(metrics=("perplexity", "size", "rouge_l"),
                                                                  max_examples=2), tmp_path / "out",
                      threads=THREADS)
    assert result.examples == 2
    assert all("perplexity" in m.metrics for m in result.models)  # each model's own per-token value
    assert "perplexity" not in result.retention["student"]
    assert any("tokenization differs from teacher's" in note for note in result.notes)
    assert any("seeded sample of 2" in note for note in result.notes)


def test_extractive_qa_with_onnx(tmp_path: Path) -> None:
    from distill.backends.export import export_verified, parse_target

    bert = tmp_path / "bert"
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=train_byte_bpe(TEXT, 320),
                                                     eos_token="<|endoftext|>", pad_token="<|pad|>")
    tokenizer.save_pretrained(bert)
    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model("bert", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=2, vocab_size=len(tokenizer),
                                               max_position_embeddings=128)
    transformers.AutoModelForQuestionAnswering.from_config(config).save_pretrained(bert)
    artifact, _ = export_verified(bert, parse_target("onnx:none"), tmp_path / "onnx")
    split = tmp_path / "test.jsonl"
    split.write_text(lines_text(RECORDS[:2]))
    candidates = [Candidate("student", "hf", bert, bert, CPU),
                  Candidate("onnx:none", "onnx", artifact.path.parent, bert)]
    result = evaluate(candidates, split, "extractive-qa", Eval(metrics=("exact_match", "f1", "perplexity", "latency")),
                      tmp_path / "out", threads=THREADS)
    student, onnx = result.models
    assert set(student.metrics) == {"exact_match", "f1", "latency_ms"}
    assert onnx.metrics["f1"] == student.metrics["f1"] and onnx.precision == "float32"
    # optimum prunes weights the QA graph never reads (BERT's pooler): fewer, not more, initializers
    assert student.params is not None and onnx.params is not None
    assert 0.9 * student.params < onnx.params <= student.params
    assert "metric 'perplexity' does not apply to extractive-qa; not measured" in result.notes
    assert any(note.startswith("extractive-qa latency_ms is per question") for note in result.notes)
    predictions = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    by_model = {(p["model"], p["id"]): p["prediction"] for p in predictions}
    assert by_model["student", "a"] == by_model["onnx:none", "a"]
    assert by_model["student", "a"] in RECORDS[0].context  # a span of the context
