"""Text sources (.txt, .md) -> one page per file, normalized like PDF text but keeping indentation
(Markdown code blocks) and without header or footer logic, which needs many pages."""

from __future__ import annotations

from pathlib import Path

from distill.runtime.sources.files import read_source
from distill.runtime.sources.normalize import normalize_text
from distill.runtime.sources.records import Page, SourceError


def read_text_file(path: Path, shown: str, sha256: str) -> Page:
    """Read a UTF-8 text or Markdown file as one normalized page.

    Args:
        path: the file.
        shown: its name as the lock shows it.
        sha256: of the file's bytes.

    Returns:
        Page 1 of the file, its text normalized (NFKC, line-break hyphens, whitespace).

    Raises:
        SourceError: the file cannot be read, is not a regular file, is over the size cap, is not
            UTF-8 (the message names the first bad byte, its offset and line), or holds no text.
    """
    data = read_source(path, shown)
    if not data:
        raise SourceError(shown, "empty file (0 bytes)")
    try:
        raw = data.decode("utf-8-sig")  # a leading byte-order mark is UTF-8 too, not text
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SourceError(shown, f"not UTF-8: byte 0x{data[error.start]:02x} at offset {error.start} "
                                 f"(line {line}) is not valid UTF-8; re-save the file as UTF-8") from error
    text = normalize_text(raw, collapse_spaces=False)
    if not text.strip():
        raise SourceError(shown, "empty: no text after normalization (only whitespace or control characters)")
    return Page(source=shown, sha256=sha256, page=1, text=text)
