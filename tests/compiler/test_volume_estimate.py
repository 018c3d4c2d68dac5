"""The plan's document estimate counts the PDF's text layer (sampled on long documents), takes
scanned pages at the text pages' average, and says when it could only guess from the file size."""

from __future__ import annotations

from pathlib import Path

from distill.compiler.spec import PdfSource, TextSource
from distill.compiler.volume import OCR_PAGE_CHARS, PDF_SAMPLE_PAGES, document_characters
from tests.runtime.sources.pdf_builders import encrypted, image_pdf, text_pdf

LINE = "The pump runs for twenty minutes, then the controller checks the pressure."


def pdf(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "manual.pdf"
    path.write_bytes(data)
    return path


def test_a_pdf_text_layer_is_counted(tmp_path: Path) -> None:
    path = pdf(tmp_path, text_pdf([[LINE] * 10] * 3))
    characters, how = document_characters(PdfSource("manual.pdf"), path)
    assert abs(characters - 3 * 10 * len(LINE)) <= 3 * 10 * 2  # line breaks and spacing as pypdf reads them
    assert how == "counted on 3 of 3 page(s)"


def test_a_long_pdf_is_sampled_first_to_last(tmp_path: Path) -> None:
    path = pdf(tmp_path, text_pdf([[LINE] * 4] * 40))
    characters, how = document_characters(PdfSource("manual.pdf"), path)
    assert how == f"estimated from {PDF_SAMPLE_PAGES} of 40 pages"
    assert abs(characters - 40 * 4 * len(LINE)) <= 40 * 4 * 2


def test_scanned_pages_count_at_the_text_pages_average_or_a_typical_page(tmp_path: Path) -> None:
    scanned = pdf(tmp_path, image_pdf([[LINE]] * 2))
    characters, how = document_characters(PdfSource("manual.pdf"), scanned)
    assert characters == 2 * OCR_PAGE_CHARS and "2 sampled page(s) without a text layer" in how


def test_an_encrypted_pdf_is_guessed_from_its_size_and_says_so(tmp_path: Path) -> None:
    path = pdf(tmp_path, encrypted(text_pdf([[LINE] * 10]), "secret"))
    characters, how = document_characters(PdfSource("manual.pdf"), path)
    assert characters == int(path.stat().st_size * 0.25) and how.startswith("guessed from its size")


def test_text_files_are_counted_by_their_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(LINE * 3)
    assert document_characters(TextSource("a.md"), tmp_path / "a.md") == (3 * len(LINE), "counted")
