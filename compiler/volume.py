"""How much data a build will train on, known before extraction runs: QA datasets are counted
exactly; documents are estimated from their size (and said to be estimates)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from distill.compiler.checks import Finding
from distill.compiler.digest import FileDigest, digest_file
from distill.compiler.sourcefiles import match_source, shown_path
from distill.compiler.spec import DatasetSource, PdfSource, SourceEntry, Spec, source_pattern

# Text density, used only for estimates: ~4 characters of English text per BPE token. A PDF's
# text is counted from its text layer on up to PDF_SAMPLE_PAGES pages spread over the document
# (pypdf, ~10-50 ms a page); a page without one (scanned: OCR'd at build time) is taken to hold
# the text pages' average, or OCR_PAGE_CHARS when no page has text. Only a PDF pypdf cannot read
# (damaged, or encrypted: the compiler reads no passwords) falls back to a share of its size.
CHARS_PER_TOKEN = 4
PDF_SAMPLE_PAGES = 16
OCR_PAGE_CHARS = 2000  # a typical page of a manual, in characters
TEXT_LAYER_MIN_CHARS = 20  # fewer: a page number or a header over a scan, not a text layer
PDF_TEXT_SHARE = 0.25  # the fallback: a text layer is ~1/4 of a PDF's size (fonts, images take the rest)
# Instruction, question and answer framing around a synthesized answer, in tokens.
QA_EXAMPLE_TOKENS = 96


@dataclass(frozen=True)
class DataVolume:
    """Examples per epoch (all splits) and their tokens, with how they were obtained."""

    examples: int
    tokens: int
    note: str
    files: tuple[FileDigest, ...]
    documents: int = 0  # source files that are documents (PDF, text), not QA datasets


def source_files(spec: Spec, root: Path) -> list[tuple[SourceEntry, Path, str]]:
    """Every file the sources match: (source entry, absolute path, path as the lock shows it,
    relative to the Distillfile's folder). Raises ``UnsafeSource`` as ``match_source`` does."""
    found: list[tuple[SourceEntry, Path, str]] = []
    for source in spec.sources:
        _, pattern = source_pattern(source)
        found.extend((source, path, shown_path(root, path)) for path in match_source(root, pattern).files)
    return found


def measure_volume(spec: Spec, root: Path) -> DataVolume:
    """Count dataset examples and estimate document chunks -> examples."""
    examples = tokens = doc_tokens = 0
    counted, estimated = [], []
    digests = []
    for source, path, shown in source_files(spec, root):
        digests.append(digest_file(path, shown))
        if isinstance(source, DatasetSource):
            n, n_tokens = _count_dataset(path, source.format)
            examples, tokens = examples + n, tokens + n_tokens
            counted.append(f"{shown}: {n} QA examples")
        else:
            characters, how = document_characters(source, path)
            doc_tokens += characters // CHARS_PER_TOKEN
            estimated.append(f"{shown} ({characters:,} characters {how})")
    if doc_tokens:
        chunks = math.ceil(doc_tokens / (spec.data.chunk_tokens - spec.data.overlap_tokens))
        synthesis = spec.data.synthesis
        if synthesis is None:
            examples += chunks
            tokens += chunks * spec.data.chunk_tokens
        else:
            per_chunk = synthesis.pairs_per_chunk * (1 + spec.data.augmentation.paraphrases)
            examples += chunks * per_chunk
            tokens += chunks * per_chunk * (QA_EXAMPLE_TOKENS if synthesis.kind == "qa"
                                            else QA_EXAMPLE_TOKENS * synthesis.turns)
        counted.append(f"~{doc_tokens:,} document tokens ({CHARS_PER_TOKEN} characters a token, a guess until the "
                       f"student's tokenizer counts them at extract) in {', '.join(estimated)} -> ~{chunks:,} chunks")
    return DataVolume(examples, tokens, "; ".join(counted), tuple(digests), len(estimated))


def document_characters(source: SourceEntry, path: Path) -> tuple[int, str]:
    """The characters of text a document gives, and how that number was found."""
    if not isinstance(source, PdfSource):
        return path.stat().st_size, "counted"  # UTF-8 text: about a byte a character
    sampled = _pdf_characters(path)
    if sampled is None:
        return int(path.stat().st_size * PDF_TEXT_SHARE), "guessed from its size (pypdf cannot read it here)"
    return sampled


def _pdf_characters(path: Path) -> tuple[int, str] | None:
    import logging

    from pypdf import PdfReader

    pypdf_log = logging.getLogger("pypdf")
    level, pypdf_log.level = pypdf_log.level, logging.ERROR  # its warnings are extract's to report
    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            return None
        pages = len(reader.pages)
        count = min(PDF_SAMPLE_PAGES, pages)
        picks = sorted({round(i * (pages - 1) / max(count - 1, 1)) for i in range(count)})  # first to last
        lengths = [len((reader.pages[i].extract_text() or "").strip()) for i in picks]
    except Exception:  # noqa: BLE001 - pypdf raises many types on damaged files; extract reports them
        return None
    finally:
        pypdf_log.level = level
    text = [n for n in lengths if n >= TEXT_LAYER_MIN_CHARS]
    per_page = sum(text) / len(text) if text else OCR_PAGE_CHARS
    how = (f"counted on {len(picks)} of {pages} page(s)" if len(picks) == pages
           else f"estimated from {len(picks)} of {pages} pages")
    scanned = len(picks) - len(text)
    if scanned:
        how += f"; {scanned} sampled page(s) without a text layer counted at {per_page:,.0f} characters"
    return round(per_page * pages), how


def split_findings(spec: Spec, volume: DataVolume) -> list[Finding]:
    """A warning when ``split.by: document`` cannot give every split a document: with a val and
    a test split, fewer than 3 documents leave one empty (or train), whatever the fractions."""
    split = spec.data.split
    wanted = 1 + (split.val > 0) + (split.test > 0)
    if split.by != "document" or not volume.documents or volume.documents >= wanted:
        return []
    return [Finding(("data", "split", "by"), f"split by document with {volume.documents} document(s) cannot fill "
                    f"{wanted} splits: whole documents go to one split, so at least one split gets none of them",
                    "set data.split.by: chunk to split the chunks of the documents instead", "warning")]


def _count_dataset(path: Path, fmt: str) -> tuple[int, int]:
    """(examples, tokens estimated from question + context + answer bytes). Unreadable files
    count 0 here; extraction reports them with their reason. JSON nested past Python's recursion
    limit (about 1,000 levels) raises RecursionError in json, so that is unreadable too."""
    if fmt == "auto":
        fmt = "jsonl" if path.suffix == ".jsonl" else "squad"
    try:
        text = path.read_text("utf-8")
        if fmt == "jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            size = sum(len(json.dumps(row)) for row in rows)
            return len(rows), size // CHARS_PER_TOKEN
        data = json.loads(text).get("data", [])
        n = size = 0
        for article in data:
            for paragraph in article.get("paragraphs", []):
                qas = paragraph.get("qas", [])
                n += len(qas)
                size += len(qas) * len(paragraph.get("context", "")) + sum(len(json.dumps(q)) for q in qas)
        return n, size // CHARS_PER_TOKEN
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError, RecursionError):
        return 0, 0
