"""The data card beside the synthesized JSONL: counts per split and origin, rejections by stage and
reason, generation effort, split balance and length histograms, as JSON and as Markdown."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from distill.compiler.records.data_card import (
    CardInputs,
    DataCard,
    Generation,
    ReasonCount,
    Rejected,
    SplitCounts,
    TeacherYield,
)
from distill.compiler.records.examples import Example
from distill.runtime.synthesis.examples import Rejection
from distill.runtime.synthesis.split import SplitName, SplitSummary

# Word-count bins for the length histograms: QA answers run from a few words to a few sentences.
BINS = (0, 5, 10, 20, 50, 100, 200)


def data_card(by_split: Mapping[SplitName, Sequence[Example]], rejections: Sequence[Rejection],
              generation: Generation, split: SplitSummary, chunks: int, dataset_examples: int) -> DataCard:
    examples = [e for split_examples in by_split.values() for e in split_examples]
    produced = {e.chunk for e in examples if e.origin == "teacher"}
    return DataCard(
        inputs=CardInputs(chunks, dataset_examples),
        examples={name: len(items) for name, items in by_split.items()},
        origins={name: dict(sorted(Counter(e.origin for e in items).items())) for name, items in by_split.items()},
        chunks_with_examples=len(produced - {None}),
        generation=generation,
        rejected=Rejected(len(rejections), dict(sorted(Counter(r.stage for r in rejections).items())),
                          _reasons(rejections)),
        split=SplitCounts(dict(split.groups), dict(split.examples), split.warnings),
        lengths_words={field: {name: _histogram(_words(e, field) for e in items if e.messages)
                               for name, items in by_split.items()} for field in ("question", "answer")},
    )


def _reasons(rejections: Sequence[Rejection]) -> tuple[ReasonCount, ...]:
    """Reasons with their numbers masked (``item 3``, ``support 0.31``), so that alike reasons
    count together; the most frequent first."""
    counts = Counter((r.stage, re.sub(r"\d+(\.\d+)?", "N", r.reason)) for r in rejections)
    return tuple(ReasonCount(stage, reason, count)
                 for (stage, reason), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _words(example: Example, field: str) -> int:
    return len(getattr(example, field).split())


def _histogram(values: Iterable[int]) -> dict[str, int]:
    counts = Counter(_bin(v) for v in values)
    return {label: counts.get(label, 0) for label in _labels()}


def _labels() -> list[str]:
    return [f"{lo}-{hi - 1}" for lo, hi in zip(BINS, BINS[1:], strict=False)] + [f"{BINS[-1]}+"]


def _bin(value: int) -> str:
    for lo, hi in zip(BINS, BINS[1:], strict=False):
        if value < hi:
            return f"{lo}-{hi - 1}"
    return f"{BINS[-1]}+"


def teacher_yield_lines(teacher_yield: TeacherYield | None) -> list[str]:
    """The yield paragraph of the data card and the model card."""
    if teacher_yield is None:
        return []
    histogram = ", ".join(f"{k}: {v}" for k, v in teacher_yield.chunks_by_accepted.items())
    lost = ", ".join(f"{k} {v}" for k, v in teacher_yield.lost_by_stage.items()) or "none"
    return ["", f"Teacher yield: {teacher_yield.accepted} of {teacher_yield.requested} requested items "
            f"({teacher_yield.ratio:.0%}) parsed and were grounded, over {teacher_yield.chunks} chunks "
            f"(chunks by usable items: {histogram}; items lost by stage: {lost})."]


def card_markdown(card: DataCard) -> str:
    """The card for people: the same numbers as ``data_card.json``."""
    lines = ["# Data card", "", f"Inputs: {card.inputs.chunks} chunks, {card.inputs.dataset_examples} dataset "
             f"examples; {card.chunks_with_examples} chunks gave at least one example.", "",
             "| split | examples | groups | by origin |", "| --- | ---: | ---: | --- |"]
    for name, count in card.examples.items():
        origins = ", ".join(f"{k} {v}" for k, v in card.origins[name].items()) or "-"
        lines.append(f"| {name} | {count} | {card.split.groups.get(name, 0)} | {origins} |")
    generation = card.generation
    lines += ["", f"Teacher requests: {generation.requests}, decoding {generation.decoding} "
              f"({generation.repairs} repair prompts, {generation.chunks_repaired} chunks needed one; "
              f"{generation.top_ups} top-ups for missing pairs; "
              f"{generation.prose_replies} replies read from prose), {generation.paraphrase_requests} "
              f"paraphrase requests; {generation.resumed_chunks} chunks taken from a previous run's journal."]
    lines += teacher_yield_lines(generation.teacher_yield)
    lines += [f"Note: {note}" for note in generation.notes]
    lines += [f"Warning: {warning}" for warning in (*generation.warnings, *card.split.warnings)]
    lines += ["", f"## Rejected: {card.rejected.total}", ""]
    if card.rejected.by_reason:
        lines += ["| stage | reason | count |", "| --- | --- | ---: |"]
        lines += [f"| {r.stage} | {r.reason.replace('|', '/')} | {r.count} |" for r in card.rejected.by_reason]
    for field, per_split in card.lengths_words.items():
        lines += ["", f"## {field.capitalize()} length (words)", "", "| words | " + " | ".join(per_split) + " |",
                  "| --- |" + " ---: |" * len(per_split)]
        lines += [f"| {label} | " + " | ".join(str(h[label]) for h in per_split.values()) + " |" for label in _labels()]
    return "\n".join(lines) + "\n"
