"""PDF sources -> pages, one page at a time.

Each page's text comes from its text layer (pypdf) or, when the layer is empty or too thin, from
OCR: poppler renders that one page and tesseract reads it. Only one page image exists at a time,
in a private folder inside the project's ``.distill/tmp`` (never the shared ``/tmp``: the image of
a decrypted page is as secret as the document), removed on every exit, and a killed run's folder is
removed by the next extraction; memory stays flat however long the document is, and the file
itself is read lazily from disk, not loaded whole. File-level problems raise ``SourceError`` naming
the file; a page that fails becomes ``Skipped`` with its reason and extraction goes on. pypdf
repairs what it can and only logs what it cannot (a content stream that does not decompress, an
object the file does not hold), returning less text or none: such a log line for a page makes the
page fail too, so a damaged page is never an empty page.

Pages come out with their raw text; ``read_pdf`` (or ``normalize.normalize_pages`` on the
collected pages) does the cross-page cleanup.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytesseract
from pypdf import PasswordType, PdfReader, PdfWriter
from pypdf.errors import DependencyError

from distill.compiler.spec import PdfSource
from distill.runtime.sources.files import open_source, scratch_prefix
from distill.runtime.sources.normalize import (
    RUN_TOGETHER_TRIGGER,
    NormalizeReport,
    better_text,
    normalize_pages,
    run_together_share,
)
from distill.runtime.sources.records import Page, Skipped, SourceError

if TYPE_CHECKING:
    from rich.progress import Progress

# A page whose text layer has fewer visible characters than this is OCR'd under `ocr: auto`. A
# running header or a page number ("Chapter 3", "12 / 233") stays under 20; a page of real text
# has 1,000-3,000. So a scanned page that carries only a stamped page number is still OCR'd.
MIN_TEXT_CHARS = 20
# 300 dpi is tesseract's recommended resolution: body text at 10 pt is then about 40 px high.
OCR_DPI = 300
# Generous ceilings for one page (a full A4 page of text takes about 0.2 s to render and 2 s to
# read on one core here), so a pathological page fails alone instead of stalling the build.
RENDER_TIMEOUT_S = 120
OCR_TIMEOUT_S = 300
# A crop area covering the whole coordinate range PDF readers support (+-32767 units).
POPPLER_WHOLE_PLANE = ("-x", "-32768", "-y", "-32768", "-W", "65536", "-H", "65536")
# Readers accept the %PDF- header anywhere in the first 1024 bytes and %%EOF in the last 1024.
EDGE_BYTES = 1024
# pypdf logs, instead of raising, when a stream does not decode (pypdf.filters: zlib errors,
# missing end markers) or an object is missing ("Object 12 0 not defined."): text is then lost.
_DAMAGE_LOGGER = "pypdf.filters"
_MISSING_OBJECT = "not defined"

ProgressHook = Callable[[int, int, bool], None]
"""Called after each page with (page number, page count, whether the page was OCR'd)."""


def rich_progress_hook(progress: Progress, label: str) -> ProgressHook:
    """A hook that drives two bars on ``progress``: pages done out of the total, and OCR'd pages.

    Args:
        progress: a started ``rich.progress.Progress`` owned by the caller.
        label: what to call the document on the bars (its shown path).
    """
    pages_task = progress.add_task(f"{label}: pages", total=None)
    ocr_task = progress.add_task(f"{label}: OCR", total=None)

    def hook(page: int, pages: int, ocr: bool) -> None:
        progress.update(pages_task, total=pages, completed=page)
        if ocr:
            progress.advance(ocr_task)

    return hook


def extract_pdf(
    path: Path, shown: str, sha256: str, source: PdfSource, progress: ProgressHook | None = None,
    *, scratch: Path,
) -> Iterator[Page | Skipped]:
    """Extract a PDF page by page.

    Args:
        path: the file.
        shown: its name as the lock shows it; used in pages, skips and errors.
        sha256: of the file's bytes.
        source: the Distillfile entry (OCR mode and language, password variable).
        progress: called after each page (see ``ProgressHook``).
        scratch: the folder for this run's private scratch folder (``scratch_folder(root)``).

    Yields:
        A ``Page`` (raw text, not yet normalized) or a ``Skipped`` for each page, in order.

    Raises:
        SourceError: the file is unreadable, not a PDF, truncated or corrupt, empty, encrypted
            without a working password, or OCR is needed but tesseract or its language is missing.
    """
    _check_file(path, shown)
    scratch.mkdir(parents=True, exist_ok=True)
    stream = open_source(path, shown)
    # mode 0700, removed when the generator ends, fails or is closed early
    with stream, tempfile.TemporaryDirectory(prefix=scratch_prefix(), dir=scratch) as own:
        reader, protected = _open_reader(stream, shown, source.password_env)
        total = _page_count(reader, shown)
        pages = _PageExtractor(reader, path, shown, sha256, source, Path(own), protected)
        for number in range(1, total + 1):
            item = pages.extract(number)
            if progress is not None:
                progress(number, total, isinstance(item, Page) and item.ocr)
            yield item


def read_pdf(
    path: Path, shown: str, sha256: str, source: PdfSource, progress: ProgressHook | None = None,
    *, scratch: Path,
) -> tuple[list[Page], list[Skipped], NormalizeReport]:
    """Extract a PDF and normalize its pages as one document (see ``extract_pdf``).

    Returns:
        The normalized pages, the skipped pages, and what normalization removed.
    """
    pages: list[Page] = []
    skipped: list[Skipped] = []
    for item in extract_pdf(path, shown, sha256, source, progress, scratch=scratch):
        if isinstance(item, Page):
            pages.append(item)
        else:
            skipped.append(item)
    normalized, report = normalize_pages(pages)
    return normalized, skipped, report


class _PageFailure(Exception):
    """One page could not be read; the message is the reason recorded in ``Skipped``."""


class _PageExtractor:
    """Reads single pages of one open document, falling back to OCR as ``source.ocr`` says."""

    def __init__(self, reader: PdfReader, path: Path, shown: str, sha256: str, source: PdfSource,
                 scratch: Path, protected: bool) -> None:
        self.reader, self.path, self.shown, self.sha256 = reader, path, shown, sha256
        self.source, self.scratch, self.protected = source, scratch, protected
        self.tesseract_checked = False

    def extract(self, number: int) -> Page | Skipped:
        try:
            text, ocr = self._page_text(number)
        except _PageFailure as failure:
            return Skipped(source=self.shown, reason=str(failure), page=number)
        return Page(self.shown, self.sha256, number, text, ocr)

    def _page_text(self, number: int) -> tuple[str, bool]:
        if self.source.ocr == "always":
            return self._ocr(number), True
        try:
            text = self._text_layer(number)
        except _PageFailure as failure:
            if self.source.ocr == "never":
                raise
            try:  # a damaged content stream may still render: poppler is more forgiving
                ocr_text = self._ocr(number)
            except _PageFailure as ocr_failure:
                raise _PageFailure(f"{failure}; {ocr_failure}") from ocr_failure
            if _visible_chars(ocr_text) < MIN_TEXT_CHARS:  # a blank render must not hide the damage
                raise failure
            return ocr_text, True
        if self.source.ocr == "never" or _visible_chars(text) >= MIN_TEXT_CHARS:
            return text, False
        ocr_text = self._ocr(number)
        if _visible_chars(ocr_text) > _visible_chars(text):
            return ocr_text, True
        return text, False

    def _text_layer(self, number: int) -> str:
        """pypdf's text; if it runs words together, the best of poppler's text and pypdf's layout
        mode. poppler goes first: on the Debian Reference it fixes every run-together page while
        layout mode fixes none, and it is the cheaper of the two (28 ms against 45 ms a page)."""
        try:
            with _pypdf_log() as logged:
                page = self.reader.pages[number - 1]
                text = page.extract_text()
        except Exception as error:  # pypdf raises many types on a damaged page
            raise _PageFailure(f"text layer unreadable: {_describe(error)}") from error
        damage = _damage(logged)
        if damage:
            raise _PageFailure(f"text layer damaged: {damage}")
        if run_together_share(text) <= RUN_TOGETHER_TRIGGER:
            return text
        alternatives = (lambda: self._pdftotext(number), lambda: page.extract_text(extraction_mode="layout"))
        for alternative in alternatives:
            try:
                text = better_text(text, alternative())
            except Exception:  # noqa: BLE001 - an alternative only improves spacing; pypdf's text stands without it
                continue
            if run_together_share(text) <= RUN_TOGETHER_TRIGGER:
                break
        return text

    def _pdftotext(self, number: int) -> str:
        """poppler's text of one page in content-stream order (``-raw``, as pypdf reads it); it
        places word gaps from glyph positions, which survives fonts that confuse pypdf.

        poppler keeps only text inside the page and pypdf keeps all of it; the crop area is opened
        far past the page (in points at the default 72 dpi) so both see the same text (tables in
        the Debian Reference run off the bottom of their page).
        """
        with self._poppler_page(number) as (file, page):
            args = ["pdftotext", "-q", "-raw", "-enc", "UTF-8", *POPPLER_WHOLE_PLANE,
                    "-f", str(page), "-l", str(page), str(file), "-"]
            done = subprocess.run(args, capture_output=True, check=True, timeout=RENDER_TIMEOUT_S)
        return done.stdout.decode("utf-8", errors="replace")

    def _ocr(self, number: int) -> str:
        """Render one page to a grayscale image and read it with tesseract.

        PGM, not PNG: an A4 page at 300 dpi is 8.7 MB uncompressed, and skipping the PNG encode and
        decode took rendering plus OCR from 1.0 s to 0.6 s per page here. Gray is enough: tesseract
        binarizes the image first.
        """
        self._check_tesseract()
        image = self.scratch / "page.pgm"
        try:
            with self._poppler_page(number) as (file, page):
                args = ["pdftoppm", "-r", str(OCR_DPI), "-gray", "-singlefile", "-f", str(page), "-l", str(page),
                        str(file), str(image.with_suffix(""))]
                subprocess.run(args, capture_output=True, check=True, timeout=RENDER_TIMEOUT_S)
            return pytesseract.image_to_string(str(image), lang=self.source.ocr_lang, timeout=OCR_TIMEOUT_S)
        except FileNotFoundError as error:  # the program itself: a missing file is an exit status
            raise SourceError(self.shown, "OCR needs pdftoppm, which is not installed "
                                          "(apt-get install poppler-utils)") from error
        except subprocess.CalledProcessError as error:
            said = error.stderr.decode("utf-8", errors="replace").strip().splitlines()
            detail = said[-1] if said else f"exit status {error.returncode}"
            raise _PageFailure(f"OCR: pdftoppm could not render the page: {detail}") from error
        except (subprocess.TimeoutExpired, pytesseract.TesseractError, RuntimeError) as error:
            # pytesseract reports its own timeout as a RuntimeError
            raise _PageFailure(f"OCR failed: {_describe(error)}") from error
        finally:
            image.unlink(missing_ok=True)

    @contextmanager
    def _poppler_page(self, number: int) -> Iterator[tuple[Path, int]]:
        """The file and page number poppler should open for page ``number``.

        A password-protected document is handed over as a decrypted one-page copy in the private
        (mode 0700) scratch folder, removed right after: passing the password to poppler on its
        command line would show it to every local user in the process list.
        """
        if not self.protected:
            yield self.path, number
            return
        copy = self.scratch / "page.pdf"
        try:
            writer = PdfWriter()
            writer.add_page(self.reader.pages[number - 1])
            writer.write(copy)
        except Exception as error:  # pypdf raises many types on a damaged page
            raise _PageFailure(f"could not copy the decrypted page for poppler: {_describe(error)}") from error
        try:
            yield copy, 1
        finally:
            copy.unlink(missing_ok=True)

    def _check_tesseract(self) -> None:
        """Fail the file once, clearly, when OCR is needed but cannot run at all."""
        if self.tesseract_checked:
            return
        try:
            installed = set(pytesseract.get_languages(config=""))
        except pytesseract.TesseractNotFoundError as error:
            raise SourceError(self.shown, "OCR needs tesseract, which is not installed "
                                          "(apt-get install tesseract-ocr)") from error
        missing = [lang for lang in self.source.ocr_lang.split("+") if lang not in installed]
        if missing:
            raise SourceError(self.shown, f"OCR language {'+'.join(missing)!r} is not installed (have: "
                                          f"{', '.join(sorted(installed))}); apt-get install "
                                          f"tesseract-ocr-{missing[0]}")
        self.tesseract_checked = True


def _check_file(path: Path, shown: str) -> None:
    """Refuse, by name, files that cannot be a whole PDF before pypdf guesses at them."""
    with open_source(path, shown) as stream:
        try:
            size = os.fstat(stream.fileno()).st_size
            head = stream.read(EDGE_BYTES)
            stream.seek(max(0, size - EDGE_BYTES))
            tail = stream.read(EDGE_BYTES)
        except OSError as error:
            raise SourceError(shown, f"cannot read: {error.strerror}") from error
    if size == 0:
        raise SourceError(shown, "empty file (0 bytes)")
    if b"%PDF-" not in head:
        raise SourceError(shown, f"not a PDF: no %PDF- header in its first {EDGE_BYTES} bytes "
                                 f"(it starts with {head[:16]!r})")
    if b"%%EOF" not in tail:
        raise SourceError(shown, f"truncated: no %%EOF marker in its last {EDGE_BYTES} bytes "
                                 "(an interrupted download or copy?)")


def _open_reader(stream: IO[bytes], shown: str, password_env: str | None) -> tuple[PdfReader, bool]:
    """Open and, if needed, decrypt the document.

    Returns:
        The reader, and whether it needed a real password (poppler then gets decrypted copies).
    """
    try:
        reader = PdfReader(stream)
    except DependencyError as error:
        raise _needs_cryptography(shown) from error
    except Exception as error:  # pypdf raises many types on a damaged file
        raise SourceError(shown, f"corrupt PDF: {_describe(error)}") from error
    # An owner-password-only file (permissions, no user password) opens with the empty password.
    if not reader.is_encrypted or _decrypt(reader, "", shown):
        return reader, False
    if password_env is None:
        raise SourceError(shown, "encrypted with a password: set password_env on this source to the "
                                 "name of an environment variable that holds it")
    password = os.environ.get(password_env)
    if password is None:
        raise SourceError(shown, f"encrypted; its password variable {password_env} is not set")
    if not _decrypt(reader, password, shown):
        raise SourceError(shown, f"encrypted; the password in {password_env} does not open it")
    return reader, True


def _decrypt(reader: PdfReader, password: str, shown: str) -> bool:
    try:
        return reader.decrypt(password) != PasswordType.NOT_DECRYPTED
    except DependencyError as error:
        raise _needs_cryptography(shown) from error


def _needs_cryptography(shown: str) -> SourceError:
    """pypdf decrypts RC4 itself but AES only through the optional 'cryptography' package."""
    return SourceError(shown, "encrypted with AES, which pypdf reads only with the 'cryptography' package "
                              "installed (pip install cryptography)")


def _page_count(reader: PdfReader, shown: str) -> int:
    try:
        total = len(reader.pages)
    except DependencyError as error:
        raise _needs_cryptography(shown) from error
    except Exception as error:  # pypdf raises many types on a damaged page tree
        raise SourceError(shown, f"corrupt PDF: {_describe(error)}") from error
    if total == 0:
        raise SourceError(shown, "empty PDF (0 pages)")
    return total


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def _pypdf_log() -> Iterator[list[logging.LogRecord]]:
    """pypdf's warnings while the block runs, kept from every other handler: a damaged page is
    reported once, with its file and page, instead of as a bare library line on stderr. The level
    is set for the block because quiet commands raise the root logger's to ERROR, which would drop
    the records before any handler sees them."""
    logger = logging.getLogger("pypdf")
    recorder, level, propagate = _Recorder(), logger.level, logger.propagate
    logger.addHandler(recorder)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield recorder.records
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)
        logger.propagate = propagate


def _damage(records: list[logging.LogRecord]) -> str:
    """What pypdf could not read, from its log records ("" when nothing): a stream that does not
    decode or an object that is missing. Its other warnings are repairs that keep the text."""
    found = [record.getMessage() for record in records
             if record.name == _DAMAGE_LOGGER or _MISSING_OBJECT in record.getMessage()]
    return "; ".join(dict.fromkeys(found))


def _visible_chars(text: str) -> int:
    return sum(not c.isspace() for c in text)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip().rstrip(":")
