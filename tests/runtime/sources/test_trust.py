"""Extraction on hostile and damaged inputs (issue 16): damaged PDF pages are never empty pages,
header/footer removal keeps body text and is counted, deep JSON is a file's error, every file type
is size-capped before reading, and scratch files of decrypted pages stay in `.distill/` and go."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from pypdf import PageObject, PdfWriter
from pypdf.generic import IndirectObject, NameObject, PdfObject, StreamObject

from distill.compiler import sourcefiles
from distill.compiler.cli import main
from distill.compiler.frontend import compile_file
from distill.compiler.spec import PdfSource
from distill.runtime.sources import pdf as pdf_module
from distill.runtime.sources.datasets import read_dataset
from distill.runtime.sources.normalize import normalize_pages
from distill.runtime.sources.pdf import extract_pdf
from distill.runtime.sources.records import Page, Skipped, SourceError
from distill.runtime.sources.stage import extract, read_outputs
from distill.runtime.sources.text import read_text_file
from tests.runtime.sources.pdf_builders import encrypted, image_pdf, text_pdf

TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 400}
PAGES = [
    ["The controller reads four temperature probes every thirty seconds and logs each reading."],
    ["Irrigation starts when soil moisture falls below thirty-five percent in two zones."],
    ["A cycle never runs longer than twenty minutes, which protects the pump from heat."],
]
DEEP = "[" * 100_000 + "]" * 100_000


def project(tmp_path: Path, sources: str) -> Path:
    """A Distillfile with a random tiny student (no hub) and the given ``sources:`` block."""
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    path = tmp_path / "Distillfile"
    path.write_text(f"version: 1\nname: t\nsources:\n{sources}student: {{random: {{config: tiny.json}}}}\n"
                    "data: {chunk_tokens: 48, overlap_tokens: 8}\nloss: {mask: all}\n")
    return path


def rewritten(data: bytes, index: int, contents: Callable[[PdfWriter, PageObject], PdfObject]) -> bytes:
    """``data`` with page ``index``'s /Contents replaced by what ``contents(writer, page)`` gives."""
    writer = PdfWriter(clone_from=io.BytesIO(data))
    page = writer.pages[index]
    page[NameObject("/Contents")] = contents(writer, page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def with_broken_compression(data: bytes, index: int) -> bytes:
    """Page ``index``'s content stream still says FlateDecode, but bytes in its middle are garbage:
    pypdf logs a zlib error and returns no text for the page."""
    def broken(writer: PdfWriter, page: PageObject) -> PdfObject:
        original = page.get_contents()
        assert original is not None
        packed = zlib.compress(original.get_data())
        stream = StreamObject()
        stream._data = packed[:10] + b"\x00garbage\xff" * 5 + packed[-20:]
        stream[NameObject("/Filter")] = NameObject("/FlateDecode")
        return writer._add_object(stream)
    return rewritten(data, index, broken)


def with_missing_contents(data: bytes, index: int) -> bytes:
    """Page ``index``'s /Contents points at object 9999, which the file does not hold."""
    return rewritten(data, index, lambda writer, page: IndirectObject(9999, 0, writer))


def pdf_items(path: Path, **options: object) -> list[Page | Skipped]:
    return list(extract_pdf(path, path.name, "0" * 64, PdfSource(pdf=path.name, **options),
                            scratch=path.parent / ".distill" / "tmp"))


# --- row: a damaged PDF page vanishes under on_error: fail ----------------------------------------


@pytest.mark.parametrize(("damage", "reason"), [
    (with_broken_compression, "text layer damaged: Error -3 while decompressing data"),
    (with_missing_contents, "text layer damaged: Object 9999 0 not defined."),
])
def test_a_damaged_page_is_skipped_with_its_reason_not_left_empty(damage: Callable[[bytes, int], bytes], reason: str,
                                                                  tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(damage(text_pdf(PAGES), 1))
    first, second, third = pdf_items(path, ocr="never")
    assert isinstance(first, Page) and isinstance(third, Page)
    assert isinstance(second, Skipped) and (second.source, second.page) == ("broken.pdf", 2)
    assert second.reason.startswith(reason)
    assert not caplog.records  # no bare library line naming neither file nor page


@pytest.mark.parametrize("damage", [with_broken_compression, with_missing_contents])
def test_distill_extract_exits_6_naming_file_and_page(damage: Callable[[bytes, int], bytes], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.pdf").write_bytes(damage(text_pdf(PAGES), 1))
    path = project(tmp_path, "  - pdf: broken.pdf\n    ocr: never\n")
    assert main(["extract", str(path)]) == 6
    assert "error: broken.pdf page 2: text layer damaged: " in capsys.readouterr().err


def test_under_skip_the_damaged_page_is_counted_and_listed(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.pdf").write_bytes(with_missing_contents(text_pdf(PAGES), 1))
    path = project(tmp_path, "  - pdf: broken.pdf\n    ocr: never\n    on_error: skip\n")
    assert main(["extract", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 pages (0 OCR'd)" in out and "; 1 skipped" in out
    assert "skipped broken.pdf page 2: text layer damaged: Object 9999 0 not defined." in out
    corpus, _ = read_outputs(tmp_path / ".distill" / "extract")
    assert [(s.source, s.page) for s in corpus.report.skipped] == [("broken.pdf", 2)]


# --- row: header/footer removal deletes body text -------------------------------------------------


def templated_pages(count: int) -> list[Page]:
    """Pages of a generated report: a real running header and page-number footer around body lines
    that open and close every page in the same template, differing only in their numbers."""
    pages = []
    for n in range(1, count + 1):
        body = [f"Station {n * 7 % 50} logged {n * 13 % 90} readings at {n % 24}:00 in zone {n % 5}.",
                f"The average pressure was {n * 3 % 40} kPa, within the limit of 100 kPa.",
                f"Batch {n * 11} of order {n * 17 % 1000} passed the leak test on line {n % 3}.",
                f"Operator {n * 19 % 60} signed off {n % 9} deviations for shift {n % 3}."]
        lines = ["ACME Field Report", *body, f"Page {n} of {count}"]
        pages.append(Page("report.pdf", "0" * 64, n, "\n".join(lines)))
    return pages


def test_templated_body_lines_stay_and_only_furniture_goes() -> None:
    pages = templated_pages(30)
    normalized, report = normalize_pages(pages)
    for before, after in zip(pages, normalized, strict=True):
        body = before.text.split("\n")[1:-1]
        assert after.text.split() == " ".join(body).split()
    assert report.furniture_lines == 60
    removed = sum(len("ACME Field Report") + len(f"Page {n} of 30") for n in range(1, 31))
    assert report.furniture_characters == removed
    assert report.characters == sum(len(p.text) for p in pages)
    assert report.furniture_share == removed / report.characters


def test_body_lines_that_merely_open_pages_stay() -> None:
    texts = [f"Step {n}: open valve {n + 2} before the pump starts.\nFilter {n * n} was cleaned.\n"
             f"Record {n} of the survey: the pump ran for twenty minutes without any fault." for n in range(1, 7)]
    pages = [Page("doc.pdf", "0" * 64, n, text) for n, text in enumerate(texts, 1)]
    normalized, report = normalize_pages(pages)
    assert [p.text for p in normalized] == texts and report.furniture_lines == 0


def test_furniture_is_counted_per_file_and_a_large_share_warns(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    bodies = ["The pump runs for twenty minutes.", "The valve closes after a cycle.",
              "The filter is cleaned weekly.", "The tank holds nine litres."]
    pages = [[body] for body in bodies]  # short pages: furniture is most of their text
    (tmp_path / "short.pdf").write_bytes(text_pdf(pages, header="KX-200 Service Manual", footer=True))
    path = project(tmp_path, "  - pdf: short.pdf\n    ocr: never\n")
    compiled = compile_file(path)
    report = extract(compiled.spec, compiled.root).report
    (furniture,) = report.furniture
    assert (furniture.source, furniture.lines) == ("short.pdf", 8)
    assert furniture.characters == 4 * len("KX-200 Service Manual") + 4 * len("Page 1 of 4")
    assert furniture.share > 0.05
    warning = (f"short.pdf: header/footer removal took {furniture.characters:,} characters "
               f"({furniture.share:.1%}, over 5%) in 8 lines; check pages.jsonl for lost body text")
    assert report.warnings == [warning]
    assert main(["extract", str(path)]) == 0
    out = capsys.readouterr().out
    assert "short.pdf: 8 header/footer lines removed" in out and "warning: short.pdf: header/footer removal" in out
    saved = json.loads((tmp_path / ".distill" / "extract" / "report.json").read_text())
    assert saved["furniture"][0]["characters"] == furniture.characters and saved["warnings"] == report.warnings


# --- row: a SQuAD file nested 100,000 deep --------------------------------------------------------


def test_deep_squad_is_the_files_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"data": ' + DEEP + "}")
    with pytest.raises(SourceError, match=r"^deep\.json: invalid JSON: nested deeper than"):
        read_dataset(path, "deep.json", "0" * 64, "squad")


def test_a_deep_jsonl_line_is_skipped_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps({"question": "q?", "answers": ["a"], "context": "a b"}) + "\n" + DEEP + "\n")
    example, skipped = read_dataset(path, "deep.jsonl", "0" * 64, "jsonl")
    assert example.question == "q?"
    assert isinstance(skipped, Skipped) and skipped.location == "line 2" and "nested deeper" in skipped.reason


def test_deep_squad_under_skip_is_listed_and_under_fail_exits_6(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "deep.json").write_text('{"data": ' + DEEP + "}")
    (tmp_path / "notes.md").write_text("The pump runs for twenty minutes per cycle.\n")
    skipping = project(tmp_path, "  - dataset: deep.json\n    on_error: skip\n  - text: notes.md\n")
    assert main(["extract", str(skipping)]) == 0
    assert "skipped deep.json: invalid JSON: nested deeper than" in capsys.readouterr().out
    failing = project(tmp_path, "  - dataset: deep.json\n  - text: notes.md\n")
    assert main(["extract", str(failing)]) == 6
    assert "error: deep.json: invalid JSON: nested deeper than" in capsys.readouterr().err


# --- row: the size cap applies to every file type -------------------------------------------------


@pytest.mark.parametrize("read", [
    lambda path: read_text_file(path, path.name, "0" * 64),
    lambda path: list(read_dataset(path, path.name, "0" * 64, "jsonl")),
    lambda path: pdf_items(path, ocr="never"),
], ids=["text", "dataset", "pdf"])
def test_every_file_type_is_size_capped_before_reading(read: Callable[[Path], object], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big"
    path.write_bytes(text_pdf(PAGES))  # a valid file of every kind but for its size
    monkeypatch.setattr(sourcefiles, "MAX_FILE_BYTES", path.stat().st_size - 1)
    with pytest.raises(SourceError, match=r"^big: too large: .* MiB; a source file may be at most"):
        read(path)


def _end_a_blocked_read(fifo: Path, returned: threading.Event) -> None:
    """Unless the read returned within 2 s, open the FIFO for writing and close it: a reader
    blocked on it gets end of file, so a reader that blocks fails the test instead of hanging it."""
    if returned.wait(2):
        return
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # ENXIO: no reader
        pass


def test_a_fifo_swapped_in_after_validation_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    returned = threading.Event()
    watchdog = threading.Thread(target=_end_a_blocked_read, args=(fifo, returned))
    watchdog.start()
    try:
        with pytest.raises(SourceError, match=r"^pipe\.md: cannot read: a FIFO, not a regular file$"):
            read_text_file(fifo, "pipe.md", "0" * 64)
    finally:
        returned.set()
        watchdog.join()


# --- row: crash leftovers from OCR of an encrypted PDF --------------------------------------------


def test_decrypted_page_images_stay_in_the_project_and_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KX_PDF_PASSWORD", "s3cret")
    (tmp_path / "locked.pdf").write_bytes(encrypted(image_pdf([["Scanned secret page"]]), "s3cret"))
    images = []

    def read_image(image: str, **options: object) -> str:
        images.append(Path(image))
        assert Path(image).exists()
        return "Scanned secret page with enough text to count"

    monkeypatch.setattr(pdf_module.pytesseract, "image_to_string", read_image)
    path = project(tmp_path, "  - pdf: locked.pdf\n    password_env: KX_PDF_PASSWORD\n")
    compiled = compile_file(path)
    extract(compiled.spec, compiled.root)
    scratch = tmp_path / ".distill" / "tmp"
    assert len(images) == 1 and images[0].is_relative_to(scratch)
    assert list(scratch.iterdir()) == []  # removed with the run


def test_scratch_is_removed_when_extraction_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object, **kwargs: object) -> str:
        raise KeyboardInterrupt  # as a user's Ctrl-C arrives mid-page

    monkeypatch.setattr(pdf_module.pytesseract, "image_to_string", failing)
    path = tmp_path / "scan.pdf"
    path.write_bytes(image_pdf([["Scanned page"]]))
    with pytest.raises(KeyboardInterrupt):
        pdf_items(path)
    assert list((tmp_path / ".distill" / "tmp").iterdir()) == []


def test_a_killed_runs_leftovers_go_at_the_next_extraction(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    scratch = tmp_path / ".distill" / "tmp"
    leftover, in_use = scratch / f"pdf-{dead}-x1y2", scratch / f"pdf-{os.getpid()}-busy"
    for folder in (leftover, in_use):
        folder.mkdir(parents=True)
        (folder / "page.pgm").write_bytes(b"P5 decrypted page")
    (tmp_path / "notes.md").write_text("The pump runs for twenty minutes per cycle.\n")
    compiled = compile_file(project(tmp_path, "  - text: notes.md\n"))
    extract(compiled.spec, compiled.root)
    assert not leftover.exists() and (in_use / "page.pgm").exists()
