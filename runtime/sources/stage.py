"""The extract and chunk stages, callable from the build and alone.

extract: every file the Distillfile's sources match -> normalized pages per document, and QA
examples from dataset sources, with a report of pages, OCR'd pages, characters, every skipped
item, and what header and footer removal took from each PDF (with a warning past
``FURNITURE_WARN_SHARE`` of its characters). A source with ``on_error: fail`` stops the stage at
its first unreadable item (a ``SourceError`` naming file and page); ``on_error: skip`` records the
item and goes on.

chunk: each document's pages -> chunks counted in the consuming tokenizer's tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from distill.compiler.digest import digest_file
from distill.compiler.fsutil import write_atomic
from distill.compiler.records.record import lines_text, read_lines
from distill.compiler.resolve import ResolvedModel
from distill.compiler.spec import DatasetSource, PdfSource, SourceEntry, Spec, source_pattern
from distill.compiler.volume import source_files
from distill.runtime.sources.files import remove_leftovers, scratch_folder
from distill.runtime.sources.records import (
    Chunk,
    ExtractReport,
    Furniture,
    Page,
    QAExample,
    Skipped,
    SourceError,
)

if TYPE_CHECKING:
    from distill.runtime.sources.normalize import NormalizeReport
    from distill.runtime.sources.pdf import ProgressHook


@dataclass(frozen=True)
class Document:
    """One source file's normalized pages."""

    source: str
    sha256: str
    pages: tuple[Page, ...]


@dataclass
class Corpus:
    documents: list[Document] = field(default_factory=list)
    examples: list[QAExample] = field(default_factory=list)
    report: ExtractReport = field(default_factory=ExtractReport)


ProgressFactory = Callable[[str], "ProgressHook"]


def extract(spec: Spec, root: Path, progress: ProgressFactory | None = None) -> Corpus:
    """Read every source; raises ``SourceError`` for an unreadable item of an ``on_error: fail``
    source, or when a source's pattern matches no file any more (``UnsafeSource`` when a match
    is no longer safe to read). ``progress`` makes a page progress hook for a PDF, given its
    shown name."""
    corpus = Corpus()
    scratch = scratch_folder(root)
    remove_leftovers(scratch)
    matched = source_files(spec, root)
    for source in spec.sources:
        if not any(entry is source for entry, _, _ in matched):
            raise SourceError(source_pattern(source)[1], "matches no files")
    for source, path, shown in matched:
        corpus.report.files += 1
        try:
            sha256 = digest_file(path, shown).sha256
        except OSError as exc:
            _fail_or_skip(source, corpus.report, SourceError(shown, f"cannot be read: {exc.strerror}"))
            continue
        try:
            _extract_file(source, path, shown, sha256, corpus, scratch, progress)
        except SourceError as error:
            _fail_or_skip(source, corpus.report, error)
    return corpus


def _extract_file(source: SourceEntry, path: Path, shown: str, sha256: str, corpus: Corpus,
                  scratch: Path, progress: ProgressFactory | None) -> None:
    report = corpus.report
    if isinstance(source, DatasetSource):
        from distill.runtime.sources.datasets import read_dataset

        for item in read_dataset(path, shown, sha256, source.format):
            if isinstance(item, Skipped):
                _fail_or_skip(source, report, item)
            else:
                corpus.examples.append(replace(item, split=source.split))
                report.examples += 1
                report.repaired_answers += sum(a.repaired_from is not None for a in item.answers)
        return
    if isinstance(source, PdfSource):
        from distill.runtime.sources.normalize import normalize_pages
        from distill.runtime.sources.pdf import extract_pdf

        extracted: list[Page] = []
        hook = progress(shown) if progress is not None else None
        for page in extract_pdf(path, shown, sha256, source, hook, scratch=scratch):
            if isinstance(page, Skipped):
                _fail_or_skip(source, report, page)
            else:
                extracted.append(page)
        pages, normalized = normalize_pages(extracted)
        _count_furniture(shown, normalized, report)
    else:
        from distill.runtime.sources.text import read_text_file

        pages = [read_text_file(path, shown, sha256)]
    report.pages += len(pages)
    report.ocr_pages += sum(page.ocr for page in pages)
    report.characters += sum(len(page.text) for page in pages)
    corpus.documents.append(Document(shown, sha256, tuple(pages)))


def _count_furniture(shown: str, normalized: NormalizeReport, report: ExtractReport) -> None:
    """Record what header and footer removal took from a document; warn past the bounded share."""
    from distill.runtime.sources.normalize import FURNITURE_WARN_SHARE

    if not normalized.furniture_lines:
        return
    share = normalized.furniture_share
    report.furniture.append(Furniture(shown, normalized.furniture_lines, normalized.furniture_characters,
                                      round(share, 4)))
    if share > FURNITURE_WARN_SHARE:
        report.warnings.append(
            f"{shown}: header/footer removal took {normalized.furniture_characters:,} characters "
            f"({share:.1%}, over {FURNITURE_WARN_SHARE:.0%}) in {normalized.furniture_lines} lines; "
            "check pages.jsonl for lost body text")


def _fail_or_skip(source: SourceEntry, report: ExtractReport, problem: SourceError | Skipped) -> None:
    skipped = problem if isinstance(problem, Skipped) else Skipped(problem.path, problem.reason, problem.page)
    if source.on_error == "fail" and not skipped.excluded:
        reason = f"{skipped.location}: {skipped.reason}" if skipped.location else skipped.reason
        raise SourceError(skipped.source, reason, skipped.page)
    report.skipped.append(skipped)


def chunk(corpus: Corpus, count_tokens: Callable[[str], int], chunk_tokens: int,
          overlap_tokens: int) -> list[Chunk]:
    """Chunk every document; updates ``corpus.report.chunks``."""
    from distill.runtime.sources.chunk import chunk_document

    chunks = [c for document in corpus.documents
              for c in chunk_document(document.pages, count_tokens, chunk_tokens, overlap_tokens)]
    corpus.report.chunks = len(chunks)
    return chunks


def write_outputs(folder: Path, corpus: Corpus, chunks: Iterable[Chunk]) -> None:
    """pages.jsonl, examples.jsonl, chunks.jsonl and report.json, each written atomically."""
    pages = (page for document in corpus.documents for page in document.pages)
    write_atomic(folder / "pages.jsonl", lines_text(pages))
    write_atomic(folder / "examples.jsonl", lines_text(corpus.examples))
    write_atomic(folder / "chunks.jsonl", lines_text(chunks))
    corpus.report.write(folder / "report.json")


def student_counter(model: ResolvedModel, corpus: Corpus) -> tuple[Callable[[str], int], str]:
    """The student's tokenizer as a token counter, and what it is. A ``random`` student without
    a tokenizer gets the byte-level BPE trained on the documents with its config's vocab_size."""
    from distill.runtime.sources.tokenizer import counter, load_tokenizer, train_byte_bpe

    if model.tokenizer_file is not None:
        return counter(load_tokenizer(model.tokenizer_file)), str(model.tokenizer_file)
    if model.kind == "random":
        vocab = int(model.config.get("vocab_size", 32000))
        return (counter(train_byte_bpe(corpus_texts(corpus), vocab)),
                f"byte-level BPE trained on the sources ({vocab:,} vocab)")
    raise SourceError(model.ref, "has no tokenizer.json to count chunk tokens with")


def corpus_texts(corpus: Corpus) -> list[str]:
    """What a tokenizer trained on the spot learns from: the documents' pages, then the dataset
    contexts. Every stage that trains one (chunk counting, a random teacher or student) uses this,
    so they all get the same token ids."""
    texts = [page.text for document in corpus.documents for page in document.pages]
    return texts + [example.context for example in corpus.examples]


def read_outputs(folder: Path) -> tuple[Corpus, list[Chunk]]:
    """What ``write_outputs`` wrote, back as records (a cached extract stage feeds the next)."""
    corpus = Corpus()
    documents: dict[tuple[str, str], list[Page]] = {}
    for page in read_lines(folder / "pages.jsonl", Page):
        documents.setdefault((page.source, page.sha256), []).append(page)
    corpus.documents = [Document(source, sha, tuple(pages)) for (source, sha), pages in documents.items()]
    corpus.examples = read_lines(folder / "examples.jsonl", QAExample)
    corpus.report = ExtractReport.read(folder / "report.json")
    return corpus, read_lines(folder / "chunks.jsonl", Chunk)
