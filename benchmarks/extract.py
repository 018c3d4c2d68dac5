"""Pages per second of PDF extraction: text-layer pages against OCR'd pages, in the same run.

    .venv/bin/python benchmarks/extract.py

Builds, on the spot, an A4 document of text pages (fpdf2, about 2,600 characters a page) and one
of image-only pages holding the same amount of text (Pillow at 300 dpi: a scan), then times
``extract_pdf`` over each (median of RUNS runs) and prints pages/s and the ratio. Where the
Debian Reference is installed (debian-reference-en) it also times twelve of its pages, whose
run-together text layer is repaired with poppler.

Threads are pinned: tesseract parallelizes with OpenMP, and on 2 shared cores free threading
makes the OCR timing noise, so OMP_THREAD_LIMIT=1 (each tesseract process inherits it).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from distill.compiler.spec import PdfSource
from distill.runtime.sources.pdf import extract_pdf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the PDF builders the tests use
from tests.runtime.sources.pdf_builders import excerpt, image_pdf, text_pdf  # noqa: E402 - after the sys.path line

RUNS = 3
TEXT_PAGES = 200
OCR_PAGES = 3
LINES_PER_PAGE = 36
DEBIAN_REFERENCE = Path("/usr/share/debian-reference/debian-reference.en.pdf")
SENTENCE = "Knowledge distillation trains a small student model to imitate a larger teacher model"


def page_lines(page: int) -> list[str]:
    """36 lines of about 72 characters: a full page of body text (about 2,600 characters)."""
    return [f"{page}.{line} {SENTENCE}"[:72] for line in range(LINES_PER_PAGE)]


def pages_per_second(path: Path, source: PdfSource, runs: int) -> tuple[float, int]:
    """Median pages/s over ``runs`` runs, and how many pages came out OCR'd in the last run."""
    rates, ocr = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        items = list(extract_pdf(path, path.name, "0" * 64, source, scratch=path.parent / "scratch"))
        rates.append(len(items) / (time.perf_counter() - start))
        ocr = sum(getattr(item, "ocr", False) for item in items)
    return statistics.median(rates), ocr


def main() -> None:
    os.environ["OMP_THREAD_LIMIT"] = "1"  # read by each tesseract process as it starts
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        text_path = root / "text.pdf"
        text_path.write_bytes(text_pdf([["\n".join(page_lines(n))] for n in range(TEXT_PAGES)]))
        scan_path = root / "scan.pdf"
        scan_path.write_bytes(image_pdf([page_lines(n) for n in range(OCR_PAGES)]))

        text_rate, _ = pages_per_second(text_path, PdfSource(pdf="text.pdf"), RUNS)
        ocr_rate, ocr = pages_per_second(scan_path, PdfSource(pdf="scan.pdf"), RUNS)
        assert ocr == OCR_PAGES, f"expected every scanned page OCR'd, got {ocr}"
        print(f"text layer : {text_rate:8.1f} pages/s  ({TEXT_PAGES} pages, median of {RUNS})")
        print(f"OCR        : {ocr_rate:8.2f} pages/s  ({OCR_PAGES} pages, 300 dpi, OMP_THREAD_LIMIT=1)")
        print(f"OCR / text : {ocr_rate / text_rate:8.4f}  (an OCR'd page costs {text_rate / ocr_rate:.0f} text pages)")
        if DEBIAN_REFERENCE.exists():
            real_path = root / "debian-reference.pdf"
            real_path.write_bytes(excerpt(DEBIAN_REFERENCE, range(40, 52)))
            real_rate, _ = pages_per_second(real_path, PdfSource(pdf="debian-reference.pdf"), RUNS)
            print(f"repaired   : {real_rate:8.1f} pages/s  (12 Debian Reference pages, words run together in "
                  f"pypdf, re-read by poppler)")


if __name__ == "__main__":
    main()
