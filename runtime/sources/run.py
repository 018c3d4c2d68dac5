"""extract + chunk for one Distillfile, with outputs on disk: what ``distill extract`` runs and
what the build's first stages will call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.frontend import CompiledSpec
from distill.compiler.resolve import ResolvedModel
from distill.runtime.sources.records import Chunk, SourceError
from distill.runtime.sources.stage import (
    Corpus,
    chunk,
    corpus_texts,
    extract,
    read_outputs,
    student_counter,
    write_outputs,
)


class BadSource(DistillError):
    """An unreadable source item under ``on_error: fail``."""

    exit_code = ExitCode.BAD_SOURCE


@dataclass(frozen=True)
class Extracted:
    """What the two stages produced; ``tokenizer`` names what chunks were counted with."""

    corpus: Corpus
    chunks: list[Chunk]
    tokenizer: str


def extract_and_chunk(compiled: CompiledSpec, student: ResolvedModel, folder: Path) -> Extracted:
    """Run both stages with progress bars (on stderr) and write their outputs."""
    from rich.progress import Progress

    from distill.compiler.console import stderr
    from distill.runtime.sources.pdf import rich_progress_hook

    data = compiled.spec.data
    try:
        with Progress(console=stderr(), transient=True) as progress:
            corpus = extract(compiled.spec, compiled.root, lambda shown: rich_progress_hook(progress, shown))
        count_tokens, tokenizer = student_counter(student, corpus)
    except SourceError as error:
        raise BadSource(str(error), hint="fix or remove the file, or set on_error: skip on its "
                        "source to record it and go on") from None
    chunks = chunk(corpus, count_tokens, data.chunk_tokens, data.overlap_tokens)
    write_outputs(folder, corpus, chunks)
    return Extracted(corpus, chunks, tokenizer)


def read_extracted(folder: Path) -> Extracted:
    """A finished extract stage's outputs, read back from its folder."""
    corpus, chunks = read_outputs(folder)
    return Extracted(corpus, chunks, "as extracted")


def extracted_texts(folder: Path) -> list[str]:
    """The finished extract stage's texts, as the chunk stage trained its tokenizer on them."""
    return corpus_texts(read_extracted(folder).corpus)
