"""From the synthesize stage's ``train/val/test.jsonl`` records to token ids, pure and deterministic.

Decisions, made here once:
    * Causal LM: conversations are rendered with the student's chat template and tokenized with
      ``add_special_tokens=False``: templates already write BOS where the model wants one (Llama 3's
      ``{{ bos_token }}``), and a tokenizer whose post-processor also adds BOS (or appends EOS)
      would double it. Labels are unshifted (HF convention: the model shifts), -100 where not learned.
    * ``mask="answer_only"``: the learned characters of assistant turn ``k`` run from the end of
      ``render(messages[:k], add_generation_prompt=True)`` to the end of ``render(messages[:k+1])``
      with trailing whitespace removed. So the assistant content AND the end-of-turn marker the
      template writes after it (ChatML ``<|im_end|>``, Llama 2 ``</s>``) are learned -- the student
      must learn to stop -- while the whitespace the template puts between turns (ChatML's ``\\n``
      after ``<|im_end|>``) is not: generation stops at the marker, so the model never produces it.
      A token is learned when its character span overlaps a learned span (a token straddling the
      prompt/answer border is learned: the student has to produce it).
    * ``mask="all"``: every token learned. "document" records (no messages) are ``context`` + EOS,
      all learned whatever the mask, with no BOS (the brief: raw text continues, then stops).
    * Truncation keeps the first ``max_len`` tokens. An example left with no learned label at
      positions 1.. (position 0 is never predicted after the shift) becomes a ``Skip``.
    * Extractive QA: ``tokenizer(question, context, truncation="only_second")``; ``token_type_ids``
      are kept when the tokenizer returns them (BERT does, DistilBERT does not) and padded with 0.
    * The tokenizer is never mutated: the backend truncation a transformers fast tokenizer leaves set
      after a truncating call is put back as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase

from distill.compiler.records.examples import Example
from distill.compiler.records.record import read_lines

IGNORE = -100  # HF's ignore_index for cross-entropy
Mask = Literal["answer_only", "all"]
Task = Literal["causal-lm", "extractive-qa"]
NO_TEMPLATE = "the student's tokenizer has no chat template; set student.chat_template"


@dataclass(frozen=True)
class Encoded:
    """One tokenized example.

    Attributes:
        id: the record's id.
        input_ids: token ids, at most ``max_len``.
        labels: causal LM: same length as ``input_ids``, ``-100`` where not learned, unshifted.
            ``None`` for extractive QA.
        start, end: extractive QA: the answer's first and last (inclusive) token positions.
        token_type_ids: extractive QA with a tokenizer that uses segment ids (BERT), else ``None``.
    """

    id: str
    input_ids: tuple[int, ...]
    labels: tuple[int, ...] | None
    start: int | None = None
    end: int | None = None
    token_type_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Skip:
    """An example left out of training, with a one-line reason."""

    id: str
    reason: str


def _render(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, str]], prompt: bool) -> str:
    rendered = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=prompt)
    assert isinstance(rendered, str)  # one conversation, not tokenized: its text
    return rendered


def assistant_spans(tokenizer: PreTrainedTokenizerBase,
                    messages: Sequence[Mapping[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The full rendering and the character spans ``[begin, end)`` learned under ``answer_only``.

    Raises:
        ValueError: no chat template, or a template whose prefixes are not prefixes of the whole
            rendering (e.g. one that rewrites earlier assistant turns), so spans cannot be found.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(NO_TEMPLATE)
    full = _render(tokenizer, messages, prompt=False)
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:k], prompt=True)
        through = _render(tokenizer, messages[: k + 1], prompt=False).rstrip()
        for name, prefix in ((f"messages[:{k}] with the generation prompt", before), (f"messages[:{k + 1}]", through)):
            if not full.startswith(prefix):
                raise ValueError(f"the student's chat template renders {name} as text that is not a prefix of the "
                                 "whole conversation's rendering, so assistant turns cannot be located for "
                                 "mask answer_only; use mask all or a template that renders turns append-only")
        spans.append((len(before), max(len(before), len(through))))
    return full, spans


def _learned(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    """Per token: does its character span overlap a learned span? Spans are few, tokens many."""
    return [any(s < end and e > begin for begin, end in spans) for s, e in offsets]


def _require_fast(tokenizer: PreTrainedTokenizerBase) -> None:
    if not tokenizer.is_fast:
        raise ValueError("the student's tokenizer is not a fast tokenizer; character offsets are needed "
                         "to place labels and answers")


def _tokenize(tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    _require_fast(tokenizer)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(encoding["input_ids"]), [tuple(o) for o in encoding["offset_mapping"]]


def _truncated(rid: str, ids: list[int], labels: list[int], max_len: int) -> Encoded | Skip:
    """The first ``max_len`` tokens, or a ``Skip`` when nothing left is learned."""
    kept_ids, kept_labels = ids[:max_len], labels[:max_len]
    if not any(label != IGNORE for label in kept_labels[1:]):
        learned = [i for i, label in enumerate(labels) if label != IGNORE]
        if not learned:
            return Skip(rid, f"no learned token ({len(ids)} tokens, none of them learned)")
        if learned[-1] < max_len:
            return Skip(rid, f"only position 0 is learned, which the shifted loss never predicts ({len(ids)} tokens)")
        return Skip(rid, f"answer truncated away at max_seq_len {max_len} "
                         f"({len(ids)} tokens, first learned at {learned[0]})")
    return Encoded(rid, tuple(kept_ids), tuple(kept_labels))


def encode_causal(record: Example, tokenizer: PreTrainedTokenizerBase, mask: Mask,
                  max_len: int) -> Encoded | Skip:
    """A causal-LM example: a rendered conversation, or a document's text + EOS.

    Args:
        record: one line of ``train.jsonl``.
        tokenizer: the student's fast tokenizer, with a chat template for conversations.
        mask: ``answer_only`` learns assistant turns and their end markers; ``all`` every token.
        max_len: tokens kept, from the left.

    Raises:
        ValueError: no chat template (conversations), no EOS token (documents), a slow tokenizer, or a
            template that breaks prefix rendering (``answer_only``).
    """
    rid = record.id
    messages = list(record.messages)
    if not messages:
        if record.origin != "document":
            return Skip(rid, f"no messages to learn (origin {record.origin})")
        return _truncated(rid, *_document(record.context, tokenizer), max_len)
    if mask == "all":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(NO_TEMPLATE)
        ids, _ = _tokenize(tokenizer, _render(tokenizer, messages, prompt=False))
        return _truncated(rid, ids, list(ids), max_len)
    text, spans = assistant_spans(tokenizer, messages)
    ids, offsets = _tokenize(tokenizer, text)
    labels = [i if on else IGNORE for i, on in zip(ids, _learned(offsets, spans), strict=True)]
    return _truncated(rid, ids, labels, max_len)


def _document(text: str, tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    if tokenizer.eos_token_id is None:
        raise ValueError("the student's tokenizer has no EOS token; documents end with one")
    ids = _tokenize(tokenizer, text)[0] + [tokenizer.eos_token_id]
    return ids, list(ids)


def _token_span(offsets: Sequence[tuple[int, int]], sequence_ids: Sequence[int | None],
                begin: int, end: int) -> tuple[int, int] | None:
    """First and last context tokens overlapping characters ``[begin, end)`` of the context."""
    hits = [i for i, ((s, e), seq) in enumerate(zip(offsets, sequence_ids, strict=True))
            if seq == 1 and s < end and e > begin]
    return (hits[0], hits[-1]) if hits else None


@contextmanager
def truncation_restored(tokenizer: PreTrainedTokenizerBase) -> Iterator[None]:
    """A transformers fast tokenizer leaves the truncation of a call set on its backend (the next
    call resets it from its own arguments); put the saved setting back, so the tokenizer a caller
    passes in, saves or hands to a backend afterwards is the one it gave."""
    backend = tokenizer.backend_tokenizer
    saved = backend.truncation
    try:
        yield
    finally:
        if saved is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(**saved)


def encode_extractive(record: Example, tokenizer: PreTrainedTokenizerBase, max_len: int) -> Encoded | Skip:
    """An extractive-QA example: question + context, with the answer's token positions.

    Args:
        record: one line of ``train.jsonl``; needs ``answer_start`` (a character offset in ``context``).
        tokenizer: the student's fast tokenizer (a question/context pair tokenizer such as BERT's).
        max_len: tokens kept; only the context is truncated.
    """
    rid, context, answer, start_char = record.id, record.context, record.answer, record.answer_start
    _require_fast(tokenizer)
    if start_char is None:
        return Skip(rid, "no answer_start: extractive QA needs the answer's offset in the context")
    end_char = start_char + len(answer)
    if not answer or context[start_char:end_char] != answer:
        return Skip(rid, f"answer_start {start_char} does not point at the answer in the context")
    # only_second cannot shorten the question: the fast tokenizer raises when the question and the
    # special tokens leave no room for context, so that case is a Skip, found before the call.
    question = len(tokenizer(record.question, add_special_tokens=False)["input_ids"])
    if question + tokenizer.num_special_tokens_to_add(pair=True) >= max_len:
        return Skip(rid, f"question ({question} tokens) leaves no room for the context at max_seq_len {max_len}")
    with truncation_restored(tokenizer):
        enc = tokenizer(record.question, context, truncation="only_second", max_length=max_len,
                        return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets, sequence_ids = [tuple(o) for o in enc["offset_mapping"]], enc.sequence_ids()
    span = _token_span(offsets, sequence_ids, start_char, end_char)
    kept = max((e for (_, e), seq in zip(offsets, sequence_ids, strict=True) if seq == 1), default=0)
    if span is None or kept < start_char + len(answer.rstrip()):  # trailing whitespace has no token
        return Skip(rid, f"answer (context chars {start_char}-{end_char}) beyond the window: max_seq_len {max_len} "
                         f"keeps context chars 0-{kept}")
    types = enc.get("token_type_ids")
    return Encoded(rid, tuple(ids), None, span[0], span[1], tuple(types) if types is not None else None)


def read_split(path: Path, tokenizer: PreTrainedTokenizerBase, task: Task, mask: Mask,
               max_len: int) -> tuple[list[Encoded], list[Skip]]:
    """Every record of a ``.jsonl`` split encoded, in file order, with the ones skipped.

    Args:
        path: ``train.jsonl``, ``val.jsonl`` or ``test.jsonl``.
        task: ``causal-lm`` or ``extractive-qa`` (``mask`` is ignored for the latter).
    """
    kept: list[Encoded] = []
    skipped: list[Skip] = []
    for record in read_lines(path, Example):
        result = (encode_causal(record, tokenizer, mask, max_len) if task == "causal-lm"
                  else encode_extractive(record, tokenizer, max_len))
        if isinstance(result, Encoded):
            kept.append(result)
        else:
            skipped.append(result)
    return kept, skipped


def _padded(rows: Sequence[Sequence[int]], width: int, value: int) -> torch.Tensor:
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows], dtype=torch.long)


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch.

    Causal: ``input_ids``, ``attention_mask``, ``labels`` (padded with -100). Extractive:
    ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the examples carry them, padded with
    0), ``start_positions``, ``end_positions``.

    Raises:
        ValueError: an empty batch, or causal and extractive examples mixed.
    """
    if not batch:
        raise ValueError("an empty batch")
    causal = {e.labels is not None for e in batch}
    if len(causal) > 1:
        raise ValueError("a batch mixes causal-LM and extractive-QA examples")
    width = max(len(e.input_ids) for e in batch)
    out = {"input_ids": _padded([e.input_ids for e in batch], width, pad_id),
           "attention_mask": _padded([[1] * len(e.input_ids) for e in batch], width, 0)}
    if causal == {True}:
        out["labels"] = _padded([e.labels for e in batch if e.labels is not None], width, IGNORE)
        return out
    if all(e.token_type_ids is not None for e in batch):
        out["token_type_ids"] = _padded([e.token_type_ids for e in batch if e.token_type_ids is not None], width, 0)
    out["start_positions"] = torch.tensor([e.start for e in batch], dtype=torch.long)
    out["end_positions"] = torch.tensor([e.end for e in batch], dtype=torch.long)
    return out
