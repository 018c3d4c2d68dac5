"""Extraction quality on real PDFs no one here wrote, shipped by Debian packages (scripts/setup.sh
installs them; the tests skip, saying which package, where one is absent):

- camlidl-doc: the CamlIDL manual, 26 pages typeset by pdfTeX in 2007, whose text layer holds
  ligature glyphs (U+FB01 "fi" and friends) that NFKC turns back into letters.
- gnuplot-doc: the gnuplot manual (the issue names it), for page counts, ligatures and stable chunk ids.
- debian-reference-en: the Debian Reference, 261 pages from xdvipdfmx, whose fonts make pypdf run
  the words of most pages together ("Therearetwomethodsofassociatingafile").
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from distill.compiler.spec import PdfSource
from distill.runtime.sources.normalize import RUN_TOGETHER_TRIGGER, run_together_share
from distill.runtime.sources.pdf import extract_pdf, read_pdf
from distill.runtime.sources.records import Page
from tests.runtime.sources.pdf_builders import excerpt

CAMLIDL = Path("/usr/share/doc/camlidl/camlidl-1.04.doc.pdf")
DEBIAN_REFERENCE = Path("/usr/share/debian-reference/debian-reference.en.pdf")
LIGATURES = re.compile("[\ufb00-\ufb06]")
# No English word reaches 26 letters; the longest letter run in poppler's text of the whole
# Debian Reference has 24 ("PreferredAuthentications", a config key), while pypdf's text of each
# of the twelve excerpt pages below has 5 to 23 runs past 25 letters.
LONGEST_WORD = 25


def needs(path: Path, package: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent: apt-get install {package} "
                                                        "(scripts/setup.sh does)")


def pdfinfo_pages(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)$", info, re.MULTILINE).group(1))


def too_long_runs(text: str) -> list[str]:
    return [run for run in re.findall(r"[^\W\d_]+", text) if len(run) > LONGEST_WORD]


def text_hashes(pages: list[Page]) -> list[str]:
    return [hashlib.sha256(page.text.encode()).hexdigest() for page in pages]


def read(path: Path, shown: str, scratch: Path) -> list[Page]:
    pages, skipped, _ = read_pdf(path, shown, "0" * 64, PdfSource(pdf=shown), scratch=scratch)
    assert skipped == []
    return pages


@needs(CAMLIDL, "camlidl-doc")
def test_camlidl_manual_whole_document(tmp_path: Path) -> None:
    raw = list(extract_pdf(CAMLIDL, "camlidl.pdf", "0" * 64, PdfSource(pdf="camlidl.pdf"), scratch=tmp_path))
    assert sum(bool(LIGATURES.search(page.text)) for page in raw) == 26  # there was something to fix

    pages, skipped, report = read_pdf(CAMLIDL, "camlidl.pdf", "0" * 64, PdfSource(pdf="camlidl.pdf"),
                                      scratch=tmp_path)
    assert skipped == [] and [page.page for page in pages] == list(range(1, pdfinfo_pages(CAMLIDL) + 1))
    assert not any(page.ocr for page in pages)
    text = "\n".join(page.text for page in pages)
    assert not LIGATURES.search(text) and "identifiers" in text
    assert too_long_runs(text) == []
    # the page number opening pages 2-26 is furniture; page 1 (the title page) has none
    assert report.furniture_lines >= 25 and not any(page.text.split("\n")[0].isdigit() for page in pages)
    assert text_hashes(pages) == text_hashes(read(CAMLIDL, "camlidl.pdf", tmp_path))


@needs(DEBIAN_REFERENCE, "debian-reference-en")
def test_debian_reference_words_are_separated(tmp_path: Path) -> None:
    # Twelve body pages of the real file (fonts and all), so the test stays fast.
    path = tmp_path / "debian-reference-excerpt.pdf"
    path.write_bytes(excerpt(DEBIAN_REFERENCE, range(40, 52)))
    raw = [page.extract_text() for page in PdfReader(path).pages]
    assert sum(run_together_share(text) > RUN_TOGETHER_TRIGGER for text in raw) >= 10  # the problem is real

    pages = read(path, "debian-reference.pdf", tmp_path)
    assert len(pages) == 12
    for page in pages:
        assert run_together_share(page.text) <= RUN_TOGETHER_TRIGGER, page.page
        assert too_long_runs(page.text) == [], page.page
    assert "There are two methods of associating a file" in pages[0].text
    assert text_hashes(pages) == text_hashes(read(path, "debian-reference.pdf", tmp_path))


@pytest.mark.slow
@needs(DEBIAN_REFERENCE, "debian-reference-en")
def test_debian_reference_whole_document(tmp_path: Path) -> None:
    """All 261 pages (about 20 s: pypdf takes 60-70 ms a page on this file, poppler 28 ms more on
    the pages it repairs)."""
    pages = read(DEBIAN_REFERENCE, "debian-reference.pdf", tmp_path)
    assert [page.page for page in pages] == list(range(1, pdfinfo_pages(DEBIAN_REFERENCE) + 1))
    text = "\n".join(page.text for page in pages)
    assert not LIGATURES.search(text) and too_long_runs(text) == []
    assert max(run_together_share(page.text) for page in pages) <= RUN_TOGETHER_TRIGGER


GNUPLOT = Path("/usr/share/doc/gnuplot/gnuplot.pdf")


@needs(GNUPLOT, "gnuplot-doc")
def test_gnuplot_manual_pages_and_chunks_are_stable(tmp_path: Path) -> None:
    """The issue's own pick: gnuplot's manual. Thirty body pages: right count, no ligatures, no
    words run together, and chunk ids (sha256 of provenance and text) identical across runs."""
    from distill.runtime.sources.chunk import chunk_document
    from distill.runtime.sources.tokenizer import counter, train_byte_bpe

    path = tmp_path / "gnuplot-excerpt.pdf"
    path.write_bytes(excerpt(GNUPLOT, range(20, 50)))
    runs = []
    for _ in range(2):
        pages = read(path, "gnuplot.pdf", tmp_path)
        count = counter(train_byte_bpe([page.text for page in pages], 1000))
        runs.append([c.id for c in chunk_document(pages, count, 256, 32)])
    assert len(pages) == pdfinfo_pages(path) == 30
    text = "\n".join(page.text for page in pages)
    assert not LIGATURES.search(text) and too_long_runs(text) == []
    assert runs[0] == runs[1] and len(runs[0]) > 30


@pytest.mark.slow
@needs(GNUPLOT, "gnuplot-doc")
def test_gnuplot_manual_whole_document(tmp_path: Path) -> None:
    pages = read(GNUPLOT, "gnuplot.pdf", tmp_path)
    assert [page.page for page in pages] == list(range(1, pdfinfo_pages(GNUPLOT) + 1))
    text = "\n".join(page.text for page in pages)
    assert not LIGATURES.search(text) and too_long_runs(text) == []
