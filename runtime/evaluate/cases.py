"""Test records -> token ids, once per tokenizer, so every candidate sharing a tokenizer is fed the
very same ids (the HF tokenizer's ids go to llama.cpp and onnxruntime as ids, never as text).

Causal LM: the scored row is ``encode_causal(record, tokenizer, "answer_only", max_len)`` (the
training stage's own encoding: the assistant answers and their end-of-turn markers are scored,
a "document" record's whole text + EOS); the generation prompt is the chat template applied to the
conversation before its last assistant turn, generation prompt on, tokenized without added special
tokens (the template writes BOS where a model wants one). Extractive QA: ``tokenizer(question,
context, truncation="only_second")`` with offsets, so a predicted span maps back to context text.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from distill.compiler.records.examples import Example
from distill.compiler.records.record import read_json, read_lines

Task = Literal["causal-lm", "extractive-qa"]
# A fixed prompt for latency: every candidate times the same request.
LATENCY_QUESTION = "Explain in a few sentences what knowledge distillation is and why it helps."
LATENCY_CONTEXT = ("Knowledge distillation trains a small student model to imitate a large teacher model. "
                   "The student learns from the teacher's outputs and becomes cheaper to run.")
SAMPLE_SEED = 0  # max_examples draws a seeded sample, kept in file order
# An open-book prompt (eval.teacher: open_book): the text the question was asked about, then the
# question, in the user turn.
OPEN_BOOK = "Answer the question from this text.\n\n{context}\n\nQuestion: {question}"
DEFAULT_MAX_LEN = 2048  # tokens, when the model config states no context length


@dataclass(frozen=True)
class CausalCase:
    """One test record for a causal LM.

    Attributes:
        scored: (ids, labels) for perplexity; None when the record was skipped (reason in notes).
        prompt: chat-template prompt ids for greedy generation; None for "document" records.
        reference: the answer the generation is compared with.
    """

    id: str
    scored: tuple[tuple[int, ...], tuple[int, ...]] | None
    prompt: tuple[int, ...] | None
    reference: str


@dataclass(frozen=True)
class QACase:
    """One test record for extractive QA: the encoded pair, which tokens are context, and their
    character offsets in ``context``."""

    id: str
    ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    context_mask: tuple[bool, ...]
    offsets: tuple[tuple[int, int], ...]
    context: str
    reference: str


@dataclass(frozen=True)
class Prepared:
    """Everything a tokenizer produced for one evaluation."""

    cases: tuple[CausalCase | QACase, ...]
    stop: tuple[int, ...]
    latency_ids: tuple[int, ...]
    latency_types: tuple[int, ...] | None
    notes: tuple[str, ...]
    tokenizer: Any


def read_records(test: Path, max_examples: int | None) -> list[Example]:
    """The test split's records; a seeded sample of ``max_examples`` of them, in file order."""
    records = read_lines(test, Example)
    if max_examples is not None and max_examples < len(records):
        keep = sorted(random.Random(SAMPLE_SEED).sample(range(len(records)), max_examples))
        records = [records[i] for i in keep]
    return records


def max_positions(*folders: Path) -> int:
    """The context length the first ``config.json`` found states (or DEFAULT_MAX_LEN)."""
    for folder in folders:
        config = folder / "config.json"
        if folder.is_dir() and config.is_file():
            data = read_json(config)
            for key in ("max_position_embeddings", "n_positions", "n_ctx"):
                if isinstance(data.get(key), int):
                    return data[key]
    return DEFAULT_MAX_LEN


def stop_ids(tokenizer: Any, folder: Path) -> tuple[int, ...]:
    """End-of-generation ids: the tokenizer's EOS plus every ``eos_token_id`` the model folder's
    generation_config.json / config.json declares (chat models often stop on several)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for name in ("generation_config.json", "config.json"):
        path = folder / name
        if path.is_file():
            eos = read_json(path).get("eos_token_id")
            ids.update(eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [])
    return tuple(sorted(ids))


def prepare(tokenizer_dir: Path, records: Sequence[Example], task: Task, max_len: int,
            open_book: bool = False) -> Prepared:
    """Encode every record with the tokenizer in ``tokenizer_dir`` (a fast HF tokenizer);
    ``open_book`` puts each question's text before it (:func:`with_context`)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    if task == "extractive-qa":
        return _prepare_qa(tokenizer, records, max_len)
    cases, notes = [], []
    for record in (with_context(r) for r in records) if open_book else records:
        case, note = _causal_case(tokenizer, record, max_len)
        cases.append(case)
        notes += [note] if note else []
    latency = _prompt_ids(tokenizer, [{"role": "user", "content": LATENCY_QUESTION}])
    return Prepared(tuple(cases), stop_ids(tokenizer, tokenizer_dir), latency, None, tuple(notes), tokenizer)


def with_context(record: Example) -> Example:
    """The record asked open-book: its first user turn carries the text the question was asked
    about (``OPEN_BOOK``). A record without that text (a document, a closed-book dataset item)
    is returned as it is."""
    messages = [dict(m) for m in record.messages]
    first = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
    if not record.context or record.origin == "document" or first is None:
        return record
    messages[first]["content"] = OPEN_BOOK.format(context=record.context, question=messages[first]["content"])
    return replace(record, messages=tuple(messages))


def _prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[int, ...]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    else:  # no template (a base model): the user turn's text as it is
        text = messages[-1]["content"]
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def _causal_case(tokenizer: Any, record: Example, max_len: int) -> tuple[CausalCase, str | None]:
    from distill.runtime.train.data import Encoded, encode_causal

    try:
        encoded = encode_causal(record, tokenizer, "answer_only", max_len)
        reason = encoded.reason if not isinstance(encoded, Encoded) else ""
    except ValueError as error:  # e.g. a base-model teacher without a chat template
        encoded, reason = None, str(error)
    scored = ((encoded.input_ids, encoded.labels)
              if isinstance(encoded, Encoded) and encoded.labels is not None else None)
    note = None if scored else f"example {record.id}: not scored for perplexity ({reason})"
    messages = list(record.messages)
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()  # the prompt ends before the last assistant turn, which is the reference
    prompt = _prompt_ids(tokenizer, messages) if messages else None
    return CausalCase(record.id, scored, prompt, record.answer), note


def _prepare_qa(tokenizer: Any, records: Sequence[Example], max_len: int) -> Prepared:
    from distill.runtime.train.data import truncation_restored

    cases = []
    with truncation_restored(tokenizer):
        for record in records:
            cases.append(_qa_case(tokenizer, record.id, record.question, record.context, record.answer, max_len))
        latency = _qa_case(tokenizer, "latency", LATENCY_QUESTION, LATENCY_CONTEXT, "", max_len)
    return Prepared(tuple(cases), (), latency.ids, latency.token_type_ids, (), tokenizer)


def _qa_case(tokenizer: Any, rid: str, question: str, context: str, reference: str, max_len: int) -> QACase:
    # Only the first window of a long context is read (no stride): an answer beyond it is missed.
    enc = tokenizer(question, context, truncation="only_second", max_length=max_len, return_offsets_mapping=True)
    types = enc.get("token_type_ids")
    return QACase(rid, tuple(enc["input_ids"]), tuple(types) if types is not None else None,
                  tuple(seq == 1 for seq in enc.sequence_ids()), tuple(tuple(o) for o in enc["offset_mapping"]),
                  context, reference)
