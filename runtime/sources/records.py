"""What the extract and chunk stages produce. Plain frozen records: every page, example and chunk
knows where it came from (source sha256, page, character span), and every skipped item says why.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from distill.compiler.records.record import Record


class SourceError(Exception):
    """An unreadable input, named with its file (and page): the stage fails with it when the
    source says ``on_error: fail`` and records it as ``Skipped`` when it says ``skip``."""

    def __init__(self, path: str, reason: str, page: int | None = None) -> None:
        where = f"{path} page {page}" if page is not None else path
        super().__init__(f"{where}: {reason}")
        self.path, self.reason, self.page = path, reason, page


@dataclass(frozen=True)
class Page:
    """Text of one page (PDF) or one whole file (text, markdown), after normalization.

    Attributes:
        source: the file as the lock shows it (relative to the Distillfile's folder).
        sha256: of the file's bytes.
        page: 1-based page number; 1 for text files.
        text: the normalized text.
        ocr: whether the text came from OCR.
    """

    source: str
    sha256: str
    page: int
    text: str
    ocr: bool = False


@dataclass(frozen=True)
class Answer:
    """One answer to a question.

    Attributes:
        text: the answer.
        start: character offset in the context, with ``context[start:start + len(text)] == text``;
            None when the answer is no span: a closed-book item (empty context), or a
            multiple-choice or fill-in-the-blank answer the context does not hold verbatim.
            Extractive answers (SQuAD, JSONL ``answers``) always have one.
        repaired_from: the dataset's wrong start, when it was repaired.
    """

    text: str
    start: int | None
    repaired_from: int | None = None


@dataclass(frozen=True)
class QAExample:
    """A question with its context and answers, from a dataset source.

    Attributes:
        id: the dataset's id, or ``<file>:<line or index>`` when it has none.
        context: the passage the question is about; ``""`` for a closed-book item (multiple
            choice or fill in the blank without one), whose answers then have no ``start``.
        source, sha256: the dataset file.
        location: where in the file (``line 12`` for JSONL, ``data[0].paragraphs[3].qas[1]``).
        split: the split its dataset source puts it in (``DatasetSource.split``); "auto": as
            ``data.split`` assigns it.
    """

    id: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    source: str
    sha256: str
    location: str
    split: Literal["auto", "train", "val", "test"] = "auto"


@dataclass(frozen=True)
class Skipped:
    """An item left out, and why: nothing is dropped silently.

    ``excluded`` marks items the data itself declares unusable (SQuAD 2.0's unanswerable
    questions): recorded like any skip, but never an error under ``on_error: fail``.
    """

    source: str
    reason: str
    page: int | None = None
    location: str | None = None
    excluded: bool = False


@dataclass(frozen=True)
class Furniture:
    """Running headers, footers and page numbers removed from one document: counted, never silent.

    Attributes:
        source: the document.
        lines: lines removed.
        characters: their characters.
        share: of the document's characters.
    """

    source: str
    lines: int
    characters: int
    share: float


@dataclass(frozen=True)
class Chunk:
    """A piece of one document, sized in tokens of the tokenizer that will read it.

    Attributes:
        id: sha256 of (source sha256, page span, character span, text): stable across runs.
        text: the chunk's text.
        source, sha256: the document.
        page_start, page_end: the pages the chunk spans (1-based, inclusive).
        char_start, char_end: character span in the document's text (pages joined by "\\n\\n").
        tokens: length in the consuming tokenizer's tokens.
    """

    id: str
    text: str
    source: str
    sha256: str
    page_start: int
    page_end: int
    char_start: int
    char_end: int
    tokens: int


def chunk_id(sha256: str, page_start: int, page_end: int, char_start: int, char_end: int, text: str) -> str:
    key = json.dumps([sha256, page_start, page_end, char_start, char_end, text], ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class ExtractReport(Record):
    """Counts the stage reports, every skipped item with its reason, what header and footer
    removal took from each document, and warnings (one line each) about what needs a look
    (``report.json`` of the extract stage)."""

    KIND: ClassVar[str] = "extract-report"
    VERSION: ClassVar[int] = 1

    files: int = 0
    pages: int = 0
    ocr_pages: int = 0
    characters: int = 0
    examples: int = 0
    repaired_answers: int = 0
    chunks: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    furniture: list[Furniture] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
