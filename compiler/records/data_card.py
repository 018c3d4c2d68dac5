"""``data_card.json``, beside the synthesize stage's splits: what went in, what came out per split
and origin, what was rejected and why, and what the teacher was asked. Written by synthesis
(``runtime/synthesis/card.py``); read by the report stage, which puts it in ``report.json`` and
the model card."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from distill.compiler.records.examples import SplitName
from distill.compiler.records.record import Record

DATA_CARD = "data_card.json"


@dataclass(frozen=True)
class CardInputs:
    chunks: int
    dataset_examples: int


@dataclass(frozen=True)
class TeacherYield:
    """Items asked of the teacher and accepted (parsed and grounded); ``chunks_by_accepted`` maps an
    accepted count (as text) to the chunks that gave it, ``lost_by_stage`` a rejection stage to
    the items it took."""

    requested: int
    accepted: int
    ratio: float
    chunks: int
    chunks_by_accepted: dict[str, int]
    lost_by_stage: dict[str, int]


@dataclass
class Generation:
    """The teacher's requests, counted as the stage runs (a mutable part: the stage fills it in
    pass by pass and writes it once, inside the frozen ``DataCard``)."""

    decoding: str = "none"  # data.synthesis.decoding of the requests sent; "none" without a teacher
    requests: int = 0
    repairs: int = 0  # requests after a reply that did not parse clean
    top_ups: int = 0  # requests for a chunk's missing grounded items
    chunks_repaired: int = 0
    prose_replies: int = 0  # replies with no JSON items, read as "Question: ... Answer: ..." prose
    paraphrase_requests: int = 0
    resumed_chunks: int = 0
    notes: list[str] = field(default_factory=list)
    teacher_yield: TeacherYield | None = None  # None without synthesis
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReasonCount:
    """A rejection reason with its numbers masked (``item N``), and how many items it took."""

    stage: str
    reason: str
    count: int


@dataclass(frozen=True)
class Rejected:
    total: int
    by_stage: dict[str, int]
    by_reason: tuple[ReasonCount, ...]  # the most frequent first


@dataclass(frozen=True)
class SplitCounts:
    """Groups and examples per split, and the split's warnings (one line each)."""

    groups: dict[SplitName, int]
    examples: dict[SplitName, int]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class DataCard(Record):
    """``examples`` and ``origins`` are per split; ``lengths_words`` is a word-count histogram
    (bin label -> examples) per field (question, answer) and split."""

    KIND: ClassVar[str] = "data_card"
    VERSION: ClassVar[int] = 1

    inputs: CardInputs
    examples: dict[SplitName, int]
    origins: dict[SplitName, dict[str, int]]
    chunks_with_examples: int
    generation: Generation
    rejected: Rejected
    split: SplitCounts
    lengths_words: dict[str, dict[SplitName, dict[str, int]]]
