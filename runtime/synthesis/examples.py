"""From teacher replies (and dataset examples) to training examples, pure and deterministic: pick
the usable attempt, validate, ground against the chunk, deduplicate. Every item left out becomes a
``Rejection`` with its stage and reason.

Policies, decided here once:
    * Attempt choice: a chunk's attempts are asks (the task, then top-ups for missing items),
      each with its repairs. Per ask, the first clean attempt (valid JSON, every item valid); when
      none is, the attempt with the most valid items (the earliest on ties), its invalid items
      rejected. Every ask's items count; a question asked twice in one chunk is kept once.
    * Questions: a qa item's question must be a question or a request (``is_question``: a "?", or
      an English question word or request verb first) and not a sentence of the chunk with a "?"
      put after it (``copies_a_statement``), for every student. A conversation's user
      turns are not checked: a user may state something or instruct before asking.
    * Extractive students: the answer must occur in the chunk (exactly, or after normalizing case,
      whitespace and quotes); the answer becomes the chunk's own text at that span.
    * Generative students: each answer (each assistant turn of a conversation) needs an ordinary
      content word (not only identifiers and numbers copied from the chunk), must not loop or only
      restate its question, and needs a support score >= ``min_support`` (``judge_answer``). A
      conversation keeps its exchanges up to the first rejected answer; with none left it is
      rejected.
    * Dedup: on the normalized question (the user turns of a conversation); the first in chunk
      order wins, later ones are rejected naming the one kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from distill.compiler.records.examples import Example, Message
from distill.runtime.sources.records import Chunk, QAExample
from distill.runtime.synthesis.augment import normalize_question
from distill.runtime.synthesis.grounding import find_span, judge_answer, judge_question
from distill.runtime.synthesis.parse import Kind, Parsed, parse_items


@dataclass(frozen=True)
class Rejection:
    """An item left out. ``stage``: generate (a whole chunk), validate, ground, dedup,
    paraphrase, dataset."""

    stage: str
    reason: str
    source: str
    chunk: str | None = None
    item: Any = None


@dataclass(frozen=True)
class Grounding:
    """What grounding checks against: the student's kind and the support threshold (generative
    students; the question check and the content-word check apply whatever the threshold)."""

    extractive: bool
    min_support: float


def stable_id(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()[:24]


def asks(attempts: Sequence[Parsed]) -> list[list[int]]:
    """The chunk's attempts grouped by what was asked: a repair follows an attempt that did not
    parse clean and belongs to its ask; after a clean attempt, the next is a new ask (a top-up for
    the items still missing). The stage's generation follows the same rule, so the grouping of a
    journaled chunk is the grouping it was generated with."""
    grouped: list[list[int]] = []
    for index in range(len(attempts)):
        if index and not attempts[index - 1].clean:
            grouped[-1].append(index)
        else:
            grouped.append([index])
    return grouped


def choose_attempt(attempts: Sequence[Parsed]) -> int:
    """Index of the attempt of one ask whose items are used (see the module's policies)."""
    for index, parsed in enumerate(attempts):
        if parsed.clean:
            return index
    return max(range(len(attempts)), key=lambda i: (len(attempts[i].items), -i))


def chunk_examples(chunk: Chunk, replies: Sequence[str], kind: Kind, turns: int, grounding: Grounding,
                   group: str) -> tuple[list[Example], list[Rejection]]:
    """The grounded examples of one chunk's replies: each ask's chosen attempt (``asks``), a
    question asked twice kept once."""
    attempts = [parse_items(reply, kind, turns) for reply in replies]
    examples: list[Example] = []
    rejections: list[Rejection] = []
    for ask in asks(attempts):
        chosen = ask[choose_attempt([attempts[index] for index in ask])]
        parsed = attempts[chosen]
        rejections += [Rejection("validate", r.reason, chunk.source, chunk.id, r.item) for r in parsed.rejected]
        if not parsed.items:
            problems = "; ".join(parsed.problems) or "no items"
            rejections.append(Rejection("generate", f"no usable item after {len(ask)} attempt(s): {problems}",
                                        chunk.source, chunk.id, replies[chosen][:500]))
        for index, item in enumerate(parsed.items):
            example, rejection = _grounded(chunk, item, kind, grounding, group, stable_id(chunk.id, chosen, index))
            examples += [example] if example is not None else []
            rejections += [rejection] if rejection is not None else []
    return keep(deduplicate(examples, {}), rejections), rejections


def _grounded(chunk: Chunk, item: dict[str, Any], kind: Kind, grounding: Grounding, group: str,
              example_id: str) -> tuple[Example | None, Rejection | None]:
    base = Example(example_id, group, "teacher", (), "", "", chunk.text, chunk.source, chunk.sha256,
                   chunk.id, (chunk.page_start, chunk.page_end))
    if kind == "conversation":
        return _grounded_conversation(base, item["messages"], grounding)
    question, answer = item["question"], item["answer"]
    if (problem := judge_question(question, chunk.text)) is not None:
        return None, Rejection("ground", problem, chunk.source, chunk.id, item)
    if grounding.extractive:
        span = find_span(answer, chunk.text)
        if span is None:
            return None, Rejection("ground", "answer is not a span of the chunk", chunk.source, chunk.id, item)
        answer = chunk.text[span[0]:span[1]]
        return replace(base, messages=_qa_messages(question, answer), question=question, answer=answer,
                       answer_start=span[0]), None
    score, reason = judge_answer(answer, chunk.text, grounding.min_support, question)
    if reason is not None:
        return None, Rejection("ground", reason, chunk.source, chunk.id, item)
    return replace(base, messages=_qa_messages(question, answer), question=question, answer=answer,
                   support=round(score, 4)), None


def _grounded_conversation(base: Example, messages: Sequence[Message], grounding: Grounding
                           ) -> tuple[Example | None, Rejection | None]:
    kept: list[Message] = []
    scores: list[float] = []
    reason = None
    for user, assistant in zip(messages[0::2], messages[1::2], strict=False):
        score, reason = judge_answer(assistant["content"], base.context, grounding.min_support, user["content"])
        if reason is not None:
            break
        kept += [user, assistant]
        scores.append(score)
    if not kept:
        return None, Rejection("ground", f"first {reason}", base.source, base.chunk, {"messages": list(messages)})
    note = None
    if len(kept) < len(messages):
        # parse_items passes only alternating conversations ending with the assistant: a cut
        # conversation stopped at a rejected answer, whose reason is set
        note = Rejection("ground", f"conversation cut after {len(kept) // 2} of {len(messages) // 2} exchanges: "
                         f"next {reason}",
                         base.source, base.chunk, {"messages": list(messages[len(kept):])})
    return replace(base, messages=tuple(kept), question=kept[0]["content"], answer=kept[-1]["content"],
                   support=round(min(scores), 4)), note


def _qa_messages(question: str, answer: str) -> tuple[Message, ...]:
    return ({"role": "user", "content": question}, {"role": "assistant", "content": answer})


def dataset_example(example: QAExample, extractive: bool, group: str) -> tuple[Example | None, Rejection | None]:
    """A dataset's QA example as a training example; extractive students need a span."""
    answer = example.answers[0]
    if extractive and answer.start is None:
        return None, Rejection("dataset", "no answer span in a context (an extractive-qa student needs one)",
                               example.source, None, {"id": example.id, "location": example.location})
    return Example(stable_id("dataset", example.sha256, example.id), group, "dataset",
                   _qa_messages(example.question, answer.text), example.question, answer.text, example.context,
                   example.source, example.sha256, answer_start=answer.start), None


def document_example(chunk: Chunk, group: str) -> Example:
    """A chunk's own text, for students that learn the documents (``loss.mask: all``)."""
    return Example(stable_id("document", chunk.id), group, "document", (), "", "", chunk.text, chunk.source,
                   chunk.sha256, chunk.id, (chunk.page_start, chunk.page_end))


def dedup_key(example: Example) -> str:
    if example.origin == "document":
        return "document:" + example.id
    users = [m["content"] for m in example.messages if m["role"] == "user"]
    return "\n".join(normalize_question(text) for text in users)


def deduplicate(examples: Iterable[Example], seen: dict[str, str]) -> Iterator[Example | Rejection]:
    """Each example, or a rejection when its key was seen (``seen`` maps key -> kept id and is
    updated, so later calls, e.g. for paraphrases, dedup against everything kept before)."""
    for example in examples:
        key = dedup_key(example)
        if key in seen:
            yield Rejection("dedup", f"duplicate question of example {seen[key]}", example.source, example.chunk,
                            {"id": example.id, "question": example.question})
            continue
        seen[key] = example.id
        yield example


def keep(items: Iterable[Example | Rejection], rejections: list[Rejection]) -> list[Example]:
    """The examples of ``items``; its rejections are appended to ``rejections``."""
    kept: list[Example] = []
    for item in items:
        if isinstance(item, Example):
            kept.append(item)
        else:
            rejections.append(item)
    return kept
