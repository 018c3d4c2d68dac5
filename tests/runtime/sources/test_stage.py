"""The extract and chunk stages over a whole Distillfile: fail vs skip, the report, provenance,
determinism, and `distill extract`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.compiler.cli import main
from distill.compiler.frontend import compile_file
from distill.runtime.sources.records import SourceError
from distill.runtime.sources.stage import chunk, extract, read_outputs, write_outputs
from distill.runtime.sources.tokenizer import counter, train_byte_bpe
from tests.runtime.sources.pdf_builders import text_pdf, with_damaged_page

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 400}
PARAGRAPHS = [
    "The controller reads four temperature probes every thirty seconds.",
    "Irrigation starts when soil moisture falls below thirty-five percent.",
    "A cycle never runs longer than twenty minutes, to protect the pump.",
]


def project(tmp_path: Path, on_error: str = "fail", damaged: bool = False) -> Path:
    pdf = text_pdf([PARAGRAPHS, PARAGRAPHS[::-1], PARAGRAPHS[1:]])
    (tmp_path / "manual.pdf").write_bytes(with_damaged_page(pdf, 1, keep_drawing=False) if damaged else pdf)
    (tmp_path / "notes.md").write_text("# Notes\n\n" + "\n\n".join(PARAGRAPHS) + "\n")
    (tmp_path / "qa.jsonl").write_text(
        json.dumps({"question": "How long may a cycle run?", "answers": ["twenty minutes"],
                    "context": PARAGRAPHS[2]}) + "\n"
        + json.dumps({"question": "Broken?", "answers": ["not there"], "context": PARAGRAPHS[0]}) + "\n")
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    path = tmp_path / "Distillfile"
    path.write_text(
        "version: 1\nname: s\n"
        f"sources:\n  - pdf: manual.pdf\n    ocr: never\n    on_error: {on_error}\n"
        f"  - text: '*.md'\n  - dataset: qa.jsonl\n    on_error: skip\n"
        "student: {random: {config: tiny.json}}\ndata: {chunk_tokens: 48, overlap_tokens: 8}\n"
        "loss: {mask: all}\n")
    return path


def test_extract_reports_everything_and_skips_with_reasons(tmp_path: Path) -> None:
    compiled = compile_file(project(tmp_path))
    corpus = extract(compiled.spec, compiled.root)
    report = corpus.report
    assert (report.files, report.pages, report.examples) == (3, 4, 1)  # 3 PDF pages + 1 text file
    assert report.characters == sum(len(p.text) for d in corpus.documents for p in d.pages)
    assert [(s.source, s.location) for s in report.skipped] == [("qa.jsonl", "line 2")]
    assert "does not occur in the context" in report.skipped[0].reason
    assert corpus.examples[0].answers[0].text == "twenty minutes"


def test_a_bad_page_fails_the_stage_or_is_skipped_as_the_source_says(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    failing = compile_file(project(tmp_path / "a", damaged=True))
    with pytest.raises(SourceError, match=r"manual\.pdf page 2"):
        extract(failing.spec, failing.root)
    skipping = compile_file(project(tmp_path / "b", on_error="skip", damaged=True))
    corpus = extract(skipping.spec, skipping.root)
    assert [(s.source, s.page) for s in corpus.report.skipped][:1] == [("manual.pdf", 2)]
    assert corpus.report.pages == 3  # pages 1 and 3 of the PDF and the text file


def test_chunks_carry_provenance_and_are_identical_across_runs(tmp_path: Path) -> None:
    compiled = compile_file(project(tmp_path))
    runs = []
    for _ in range(2):
        corpus = extract(compiled.spec, compiled.root)
        texts = [p.text for d in corpus.documents for p in d.pages]
        runs.append(chunk(corpus, counter(train_byte_bpe(texts, 400)), 48, 8))
    assert [c.id for c in runs[0]] == [c.id for c in runs[1]]
    pdf = next(d for d in corpus.documents if d.source == "manual.pdf")
    joined = "\n\n".join(p.text for p in pdf.pages)
    for c in (c for c in runs[0] if c.source == "manual.pdf"):
        assert joined[c.char_start:c.char_end] == c.text and c.sha256 == pdf.sha256
        assert 1 <= c.page_start <= c.page_end <= 3 and c.tokens <= 48


def test_a_pattern_that_stopped_matching_is_an_error(tmp_path: Path) -> None:
    compiled = compile_file(project(tmp_path))
    (tmp_path / "notes.md").unlink()
    with pytest.raises(SourceError, match=r"\*\.md: matches no files"):
        extract(compiled.spec, compiled.root)


def test_distill_extract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project(tmp_path)
    assert main(["extract", str(path)]) == 0
    out = capsys.readouterr().out
    assert "3 file(s): 4 pages (0 OCR'd)" in out and "skipped qa.jsonl line 2:" in out
    folder = tmp_path / ".distill" / "extract"
    chunks = [json.loads(line) for line in (folder / "chunks.jsonl").read_text().splitlines()]
    assert chunks and {"id", "source", "sha256", "page_start", "char_start", "tokens"} <= set(chunks[0])
    assert json.loads((folder / "report.json").read_text())["chunks"] == len(chunks)


def test_distill_extract_names_the_bad_file_and_exits_6(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = project(tmp_path, damaged=True)
    assert main(["extract", str(path)]) == 6
    err = capsys.readouterr().err
    assert "error: manual.pdf page 2:" in err and "on_error: skip" in err


def test_outputs_read_back_as_written(tmp_path: Path) -> None:
    path = project(tmp_path, on_error="skip", damaged=True)
    compiled = compile_file(path)
    corpus = extract(compiled.spec, compiled.root)
    chunks = chunk(corpus, lambda text: len(text.split()), 64, 8)
    write_outputs(tmp_path / "out", corpus, chunks)
    again, chunks_again = read_outputs(tmp_path / "out")
    assert again.documents == corpus.documents and again.examples == corpus.examples
    assert again.report == corpus.report and chunks_again == chunks
