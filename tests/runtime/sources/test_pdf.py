"""PDF extraction on PDFs built on the spot: text layers, image-only pages through real OCR
(pdftoppm + tesseract), encryption, damaged files and damaged pages."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytesseract
import pytest
from fpdf import FPDF
from pypdf import PdfWriter
from rich.console import Console
from rich.progress import Progress

from distill.compiler.spec import PdfSource
from distill.runtime.sources import pdf as pdf_module
from distill.runtime.sources.pdf import extract_pdf, read_pdf, rich_progress_hook
from distill.runtime.sources.records import Page, Skipped, SourceError
from tests.runtime.sources.pdf_builders import encrypted, image_pdf, text_pdf, with_damaged_page

TEXT_PAGES = [
    ["Knowledge distillation trains a small student model to imitate a large teacher model."],
    ["The pump runs for twenty minutes per cycle and stops when the pressure drops."],
    ["Replace the filter cartridge every six months or after one thousand cycles."],
]
SCANNED = [
    "Knowledge distillation trains a small student model",
    "to imitate the outputs of a larger teacher model.",
    "The pump runs for twenty minutes per cycle and",
    "stops when the pressure drops below 2.5 bar.",
]


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions), one row at a time."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate over whitespace-normalized text."""
    reference, hypothesis = " ".join(reference.split()), " ".join(hypothesis.split())
    return levenshtein(reference, hypothesis) / len(reference)


def concat(*documents: bytes) -> bytes:
    writer = PdfWriter()
    for data in documents:
        writer.append(io.BytesIO(data))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def extract(path: Path, **options: object) -> list[Page | Skipped]:
    return list(extract_pdf(path, path.name, "0" * 64, PdfSource(pdf=path.name, **options),
                            scratch=path.parent / "scratch"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Page 1 has a text layer, page 2 is an image of text only."""
    return write(tmp_path_factory.mktemp("mixed"), "mixed.pdf", concat(text_pdf(TEXT_PAGES[:1]), image_pdf([SCANNED])))


def test_text_pages_come_out_in_order_with_provenance(tmp_path: Path) -> None:
    items = extract(write(tmp_path, "manual.pdf", text_pdf(TEXT_PAGES)), ocr="never")
    assert [(p.source, p.sha256, p.page, p.ocr) for p in items] == [("manual.pdf", "0" * 64, n, False)
                                                                     for n in (1, 2, 3)]
    for page, paragraphs in zip(items, TEXT_PAGES, strict=True):
        assert " ".join(page.text.split()) == paragraphs[0]


def test_auto_ocrs_the_image_only_page_accurately(mixed: Path) -> None:
    text_page, scanned_page = extract(mixed, ocr="auto")
    assert not text_page.ocr and text_page.text.split() == TEXT_PAGES[0][0].split()
    assert scanned_page.ocr
    assert cer(" ".join(SCANNED), scanned_page.text) < 0.02


def test_never_leaves_the_image_page_empty_without_ocr(mixed: Path) -> None:
    _, scanned_page = extract(mixed, ocr="never")
    assert isinstance(scanned_page, Page) and scanned_page.text == "" and not scanned_page.ocr


def test_always_ocrs_pages_that_have_a_text_layer(tmp_path: Path) -> None:
    (page,) = extract(write(tmp_path, "one.pdf", text_pdf(TEXT_PAGES[:1])), ocr="always")
    assert page.ocr and cer(TEXT_PAGES[0][0], page.text) < 0.02


def test_progress_hook_sees_every_page_and_ocr(mixed: Path, tmp_path: Path) -> None:
    # Page images live in a private folder under the scratch folder, one at a time: none is
    # left when a page is done, and the folder is gone when the document is.
    scratch_root = tmp_path / "scratch"
    calls, files_between_pages = [], []

    def hook(page: int, pages: int, ocr: bool) -> None:
        calls.append((page, pages, ocr))
        files_between_pages.append([f.name for f in scratch_root.rglob("*") if f.is_file()])

    list(extract_pdf(mixed, "mixed.pdf", "0" * 64, PdfSource(pdf="mixed.pdf"), progress=hook,
                     scratch=scratch_root))
    assert calls == [(1, 2, False), (2, 2, True)]
    assert files_between_pages == [[], []]
    assert list(scratch_root.iterdir()) == []


def test_rich_progress_hook_drives_page_and_ocr_bars(mixed: Path, tmp_path: Path) -> None:
    with Progress(console=Console(file=io.StringIO())) as progress:
        hook = rich_progress_hook(progress, "mixed.pdf")
        list(extract_pdf(mixed, "mixed.pdf", "0" * 64, PdfSource(pdf="mixed.pdf"), progress=hook,
                         scratch=tmp_path))
    pages, ocr = progress.tasks
    assert (pages.description, pages.completed, pages.total) == ("mixed.pdf: pages", 2, 2)
    assert (ocr.description, ocr.completed) == ("mixed.pdf: OCR", 1)


def test_memory_stays_flat_on_a_thousand_pages(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.set_font("helvetica", size=10)
    for n in range(1, 1001):
        pdf.add_page()
        pdf.text(20, 20, f"Page {n}: knowledge distillation trains a small student to imitate a teacher.")
    path = write(tmp_path, "thousand.pdf", bytes(pdf.output()))
    tracemalloc.start()
    try:
        count = sum(1 for _ in extract_pdf(path, "thousand.pdf", "0" * 64, PdfSource(pdf="t", ocr="never"),
                                           scratch=tmp_path / "scratch"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # pypdf keeps each parsed page object (about 8 KB a page here): 8 MB for 1,000 pages, and no
    # page text is kept. A reader holding every page's text and objects twice would pass 32 MB.
    assert count == 1000 and peak < 32 * 2**20


# --- encryption ---------------------------------------------------------------------------------


def test_encrypted_without_password_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "locked.pdf", encrypted(text_pdf(TEXT_PAGES), "s3cret"))
    with pytest.raises(SourceError, match=r"^locked\.pdf: encrypted with a password: set password_env"):
        extract(path)


def test_encrypted_with_unset_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KX_PDF_PASSWORD", raising=False)
    path = write(tmp_path, "locked.pdf", encrypted(text_pdf(TEXT_PAGES), "s3cret"))
    with pytest.raises(SourceError, match=r"^locked\.pdf: encrypted; its password variable KX_PDF_PASSWORD is not set"):
        extract(path, password_env="KX_PDF_PASSWORD")


def test_encrypted_with_wrong_password_never_shows_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KX_PDF_PASSWORD", "wrong-guess")
    path = write(tmp_path, "locked.pdf", encrypted(text_pdf(TEXT_PAGES), "s3cret"))
    message = r"^locked\.pdf: encrypted; the password in KX_PDF_PASSWORD does not open it$"
    with pytest.raises(SourceError, match=message) as caught:
        extract(path, password_env="KX_PDF_PASSWORD")
    assert "wrong-guess" not in str(caught.value) and "s3cret" not in str(caught.value)


def test_encrypted_with_right_password_reads_text_and_ocrs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KX_PDF_PASSWORD", "s3cret")
    data = encrypted(concat(text_pdf(TEXT_PAGES[:1]), image_pdf([SCANNED])), "s3cret")
    text_page, scanned_page = extract(write(tmp_path, "locked.pdf", data), password_env="KX_PDF_PASSWORD")
    assert text_page.text.split() == TEXT_PAGES[0][0].split()
    # poppler reads a decrypted copy of the page: it never gets the password
    assert scanned_page.ocr and cer(" ".join(SCANNED), scanned_page.text) < 0.02


def test_owner_password_only_opens_without_password(tmp_path: Path) -> None:
    items = extract(write(tmp_path, "restricted.pdf", encrypted(text_pdf(TEXT_PAGES), "")), ocr="never")
    assert [page.text.split() for page in items] == [p[0].split() for p in TEXT_PAGES]


# --- damaged files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"^bad\.pdf: empty file \(0 bytes\)$"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), r"^bad\.pdf: not a PDF: no %PDF- header in its first 1024 bytes"),
        (b"Quarterly report\nRevenue rose.\n", r"^bad\.pdf: not a PDF"),
        (text_pdf(TEXT_PAGES)[:2000], r"^bad\.pdf: truncated: no %%EOF marker"),
        (b"%PDF-1.7\n" + b"\x00garbage\xff" * 100 + b"\n%%EOF\n", r"^bad\.pdf: corrupt PDF: "),
    ],
    ids=["zero-bytes", "png", "plain-text", "truncated", "corrupt"],
)
def test_bad_files_raise_source_error_naming_the_file(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        extract(write(tmp_path, "bad.pdf", data))


def test_pdf_without_pages_is_empty(tmp_path: Path) -> None:
    out = io.BytesIO()
    PdfWriter().write(out)
    with pytest.raises(SourceError, match=r"^blank\.pdf: empty PDF \(0 pages\)$"):
        extract(write(tmp_path, "blank.pdf", out.getvalue()))


def test_unreadable_path_raises_source_error(tmp_path: Path) -> None:
    (tmp_path / "folder.pdf").mkdir()
    with pytest.raises(SourceError, match=r"^folder\.pdf: cannot read: Is a directory$"):
        extract(tmp_path / "folder.pdf")


# --- damaged pages ------------------------------------------------------------------------------


def test_damaged_page_is_skipped_with_its_reason(tmp_path: Path) -> None:
    path = write(tmp_path, "damaged.pdf", with_damaged_page(text_pdf(TEXT_PAGES), 1, keep_drawing=True))
    first, second, third = extract(path, ocr="never")
    assert isinstance(first, Page) and isinstance(third, Page)
    assert second == Skipped(source="damaged.pdf", page=2,
                             reason="text layer unreadable: PdfReadError: Unexpected end of stream.")


def test_auto_recovers_a_damaged_page_that_still_renders(tmp_path: Path) -> None:
    path = write(tmp_path, "damaged.pdf", with_damaged_page(text_pdf(TEXT_PAGES[:2]), 1, keep_drawing=True))
    _, second = extract(path, ocr="auto")
    assert isinstance(second, Page) and second.ocr and cer(TEXT_PAGES[1][0], second.text) < 0.02


def test_auto_keeps_skipping_a_damaged_page_that_renders_blank(tmp_path: Path) -> None:
    path = write(tmp_path, "damaged.pdf", with_damaged_page(text_pdf(TEXT_PAGES[:2]), 1, keep_drawing=False))
    _, second = extract(path, ocr="auto")
    assert isinstance(second, Skipped) and second.reason.startswith("text layer unreadable: PdfReadError")


def test_ocr_failure_skips_only_that_page(mixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object, **kwargs: object) -> str:
        raise pytesseract.TesseractError(1, "Error in pixReadStream")

    monkeypatch.setattr(pdf_module.pytesseract, "image_to_string", failing)
    text_page, scanned_page = extract(mixed)
    assert isinstance(text_page, Page)
    assert scanned_page == Skipped(source="mixed.pdf", page=2,
                                   reason="OCR failed: TesseractError: (1, 'Error in pixReadStream')")


def test_missing_ocr_language_fails_the_file_clearly(mixed: Path) -> None:
    with pytest.raises(SourceError, match=r"^mixed\.pdf: OCR language 'xyz' is not installed \(have: .*eng.*\); "
                                          r"apt-get install tesseract-ocr-xyz$"):
        extract(mixed, ocr_lang="xyz")


def test_read_pdf_normalizes_and_separates_skips(tmp_path: Path) -> None:
    path = write(tmp_path, "damaged.pdf", with_damaged_page(text_pdf(TEXT_PAGES), 1, keep_drawing=True))
    pages, skipped, report = read_pdf(path, "damaged.pdf", "0" * 64, PdfSource(pdf="damaged.pdf", ocr="never"),
                                      scratch=tmp_path / "scratch")
    assert [p.page for p in pages] == [1, 3] and [s.page for s in skipped] == [2]
    assert pages[0].text == TEXT_PAGES[0][0] and report.furniture_lines == 0
