"""``evaluation.json``: every candidate model measured on the held-out split. Written by the
evaluate stage; read by the gates, the report stage and the build's summary table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from distill.compiler.records.record import Record

EVALUATION = "evaluation.json"


@dataclass(frozen=True)
class Decoding:
    """How answers were generated and latency measured."""

    greedy: bool
    max_new_tokens: int
    threads: int
    prompt: str
    hf: str
    latency_new_tokens: int
    latency_runs: int


@dataclass(frozen=True)
class ModelResult:
    """One candidate: where it is, its size and placement (always recorded: gates and the card
    need them), and the metrics that applied to it (``latency_ms``, ``token_f1``, ...)."""

    name: str
    kind: str
    path: str
    params: int | None
    size_bytes: int | None
    precision: str
    device: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class Sample:
    """A test question with its reference and every model's answer, by model name."""

    id: str
    question: str
    reference: str
    answers: dict[str, str]


@dataclass(frozen=True)
class Evaluation(Record):
    """``retention``: each model's metrics over the reference model's (the teacher when there is
    one, else the student), by model name then metric."""

    KIND: ClassVar[str] = "evaluation"
    VERSION: ClassVar[int] = 1

    split: str
    examples: int
    task: str
    decoding: Decoding
    models: tuple[ModelResult, ...]
    retention: dict[str, dict[str, float]]
    samples: tuple[Sample, ...]
    notes: tuple[str, ...]

    def model(self, name: str) -> ModelResult | None:
        return next((m for m in self.models if m.name == name), None)


@dataclass(frozen=True)
class Answer:
    """A model's answer to one test question, with the reference it is scored against."""

    id: str
    prediction: str
    reference: str


@dataclass(frozen=True)
class Measurement(Record):
    """One candidate measured on one test split (the evaluate stage's cache, keyed by the
    candidate's files, the split and every setting)."""

    KIND: ClassVar[str] = "measurement"
    VERSION: ClassVar[int] = 1

    metrics: dict[str, float]
    answers: tuple[Answer, ...]
