"""Text and Markdown sources: one normalized page per file, clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.runtime.sources.records import Page, SourceError
from distill.runtime.sources.text import read_text_file


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_markdown_is_normalized_and_keeps_code_indentation(tmp_path: Path) -> None:
    raw = ("\ufeff# Pump \ufb01lter\r\n\r\nThe \ufb01lter  is cleaned weekly.   \r\n\r\n\r\n\r\n"
           "```python\r\ndef clean(filter):\r\n    return filter.rinse()\r\n```\r\n")
    page = read_text_file(write(tmp_path, "notes.md", raw.encode("utf-8")), "docs/notes.md", "ab" * 32)
    assert page == Page(source="docs/notes.md", sha256="ab" * 32, page=1, ocr=False, text=(
        "# Pump filter\n\nThe filter  is cleaned weekly.\n\n"
        "```python\ndef clean(filter):\n    return filter.rinse()\n```"))


def test_line_break_hyphens_are_joined_in_text_files(tmp_path: Path) -> None:
    page = read_text_file(write(tmp_path, "a.txt", b"Knowledge distil-\nlation trains students.\n"), "a.txt", "0" * 64)
    assert page.text == "Knowledge distillation\ntrains students."


def test_non_utf8_names_the_byte_and_its_offset(tmp_path: Path) -> None:
    path = write(tmp_path, "latin1.txt", "Line one\nCaf\u00e9 menu\n".encode("latin-1"))
    with pytest.raises(SourceError, match=r"^docs/latin1\.txt: not UTF-8: byte 0xe9 at offset 12 \(line 2\) is not "
                                          r"valid UTF-8; re-save the file as UTF-8$"):
        read_text_file(path, "docs/latin1.txt", "0" * 64)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", r"^empty\.md: empty file \(0 bytes\)$"),
     (b" \n\t\r\n\x0c\n", r"^empty\.md: empty: no text after normalization")],
    ids=["zero-bytes", "whitespace-only"],
)
def test_empty_files_raise(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        read_text_file(write(tmp_path, "empty.md", data), "empty.md", "0" * 64)


def test_unreadable_path_raises(tmp_path: Path) -> None:
    (tmp_path / "folder.md").mkdir()
    with pytest.raises(SourceError, match=r"^folder\.md: cannot read: Is a directory$"):
        read_text_file(tmp_path / "folder.md", "folder.md", "0" * 64)
