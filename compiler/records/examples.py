"""The synthesize stage's splits, ``train.jsonl``, ``val.jsonl`` and ``test.jsonl``: one
``Example`` per line, written by synthesis, read by training (``runtime/train/data.py``) and
evaluation (``runtime/evaluate/cases.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Message = dict[str, str]  # {"role": ..., "content": ...}
Origin = Literal["teacher", "paraphrase", "typo", "dataset", "document"]
SplitName = Literal["train", "val", "test"]  # the files: train.jsonl, val.jsonl, test.jsonl


@dataclass(frozen=True)
class Example:
    """One training example with its provenance.

    Attributes:
        id: stable: sha256 of where it came from (chunk, attempt, item; or dataset id; or parent).
        group: the split unit it belongs to (a document, a chunk, a dataset context).
        origin: teacher (synthesized), paraphrase / typo (augmentations of ``parent``), dataset,
            document (a chunk's raw text, when nothing asks questions).
        messages: the conversation a causal-LM student learns (user/assistant turns); empty for
            document examples, whose ``context`` is the text.
        question, answer: the first user turn and the last assistant turn.
        context: the chunk (or dataset context) the answer is grounded in.
        answer_start: character offset of ``answer`` in ``context`` (extractive students).
        support: the answer's support score (generative students).
    """

    id: str
    group: str
    origin: Origin
    messages: tuple[Message, ...]
    question: str
    answer: str
    context: str
    source: str
    sha256: str
    chunk: str | None = None
    pages: tuple[int, int] | None = None
    answer_start: int | None = None
    support: float | None = None
    parent: str | None = None
