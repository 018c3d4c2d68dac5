"""Records -> token ids: answer-only masks found through the chat template, truncation and skips,
extractive answer positions, collation. Tokenizers are trained on the spot: a byte-level BPE (the
one ``random`` students get) for causal LM, a WordPiece wrapped as BERT for extractive QA."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizerFast, PreTrainedTokenizerFast

from distill.compiler.records.examples import Example
from distill.compiler.records.record import lines_text
from distill.runtime.sources.tokenizer import train_byte_bpe
from distill.runtime.train.data import (
    IGNORE,
    NO_TEMPLATE,
    Encoded,
    Skip,
    collate,
    encode_causal,
    encode_extractive,
    read_split,
)


def supervised_tokens(encoded: list[Encoded]) -> int:
    """Label tokens the loss sees: labels != -100 at positions 1.. (the model shifts, so position 0
    is never a target). Extractive examples have no label tokens and count 0."""
    return sum(sum(1 for label in e.labels[1:] if label != IGNORE) for e in encoded if e.labels is not None)


TEXT = ("The pump runs for ten minutes and draws thirty watts. Clean its filter every week with warm water. "
        "Paris is the capital of France. Which valve opens first? The red valve opens before the blue one. ")
# ChatML, as Qwen2 ships it: the end-of-turn marker is <|im_end|>, then a newline between turns.
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# Llama 2 style: BOS once, no generation prompt, each assistant turn ends with EOS.
EOS_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
                "{% else %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")
# Marks the last message, so a prefix's rendering is not a prefix of the whole conversation's.
BROKEN = "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] }}\n{% endfor %}"
CONVERSATION = [
    {"role": "system", "content": "You answer from the manual."},
    {"role": "user", "content": "How long does the pump run?"},
    {"role": "assistant", "content": "Ten minutes."},
    {"role": "user", "content": "And its power draw?"},
    {"role": "assistant", "content": "It draws thirty watts."},
]


@cache
def _bpe() -> Tokenizer:
    return train_byte_bpe([TEXT] * 4, 400)


def causal_tokenizer(template: str | None = CHATML) -> PreTrainedTokenizerFast:
    """A fresh byte-level BPE student tokenizer with ChatML markers and Llama-style BOS/EOS added."""
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_bpe().to_str()),
                                        bos_token="<s>", eos_token="</s>", pad_token="<|pad|>",
                                        additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = template
    return tokenizer


@cache
def _wordpiece() -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=300, show_progress=False,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.train_from_iterator([TEXT] * 4, trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tokenizer


def bert_tokenizer(**kwargs: Any) -> BertTokenizerFast:
    return BertTokenizerFast(tokenizer_object=Tokenizer.from_str(_wordpiece().to_str()), unk_token="[UNK]",
                             sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]", **kwargs)


def record(messages: list[dict[str, str]] = CONVERSATION, **fields: Any) -> Example:
    """A record as the synthesize stage writes it and training reads it back."""
    user = [m["content"] for m in messages if m["role"] == "user"]
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    example = Example(id="ex1", group="doc", origin="teacher", messages=tuple(messages),
                      question=user[0] if user else "", answer=answers[-1] if answers else "",
                      context=TEXT, source="manual.md", sha256="0" * 64)
    return dataclasses.replace(example, **fields)


def learned_runs(tokenizer: PreTrainedTokenizerFast, encoded: Encoded, learned: bool = True) -> list[str]:
    """The decoded runs of consecutive learned (or, with ``learned=False``, unlearned) tokens."""
    runs: list[list[int]] = []
    previous = None
    for token, label in zip(encoded.input_ids, encoded.labels, strict=True):
        on = label != IGNORE
        if on == learned:
            if previous != learned:
                runs.append([])
            runs[-1].append(token)
        previous = on
    return [tokenizer.decode(run) for run in runs]


def test_chatml_learns_each_assistant_content_and_its_end_marker_only() -> None:
    tokenizer = causal_tokenizer()
    encoded = encode_causal(record(), tokenizer, "answer_only", 512)
    assert isinstance(encoded, Encoded)
    assert learned_runs(tokenizer, encoded) == ["Ten minutes.<|im_end|>", "It draws thirty watts.<|im_end|>"]
    # Everything else -- system, user turns, role headers, the newline after <|im_end|> -- is -100.
    full = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert learned_runs(tokenizer, encoded, learned=False) == full.replace(
        "Ten minutes.<|im_end|>", "\0").replace("It draws thirty watts.<|im_end|>", "\0").split("\0")
    labelled = [label for label in encoded.labels if label != IGNORE]
    assert labelled == [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE]


def test_a_template_that_appends_eos_learns_the_eos() -> None:
    tokenizer = causal_tokenizer(EOS_TEMPLATE)
    messages = CONVERSATION[1:]  # this template has no system role
    encoded = encode_causal(record(messages), tokenizer, "answer_only", 512)
    assert isinstance(encoded, Encoded)
    assert learned_runs(tokenizer, encoded) == [" Ten minutes.</s>", " It draws thirty watts.</s>"]
    assert encoded.input_ids[0] == tokenizer.bos_token_id  # written by the template, once
    assert encoded.input_ids.count(tokenizer.bos_token_id) == 1
    assert [i for i, label in enumerate(encoded.labels) if label == tokenizer.eos_token_id] == [
        i for i, t in enumerate(encoded.input_ids) if t == tokenizer.eos_token_id]


def test_mask_all_learns_every_token() -> None:
    tokenizer = causal_tokenizer()
    encoded = encode_causal(record(), tokenizer, "all", 512)
    assert encoded.labels == encoded.input_ids
    assert tokenizer.decode(encoded.input_ids) == tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert supervised_tokens([encoded]) == len(encoded.input_ids) - 1


@pytest.mark.parametrize("mask", ["answer_only", "all"])
def test_a_document_is_its_text_then_eos_all_learned(mask: str) -> None:
    tokenizer = causal_tokenizer(None)  # documents need no chat template
    encoded = encode_causal(record([], origin="document"), tokenizer, mask, 512)
    assert encoded.labels == encoded.input_ids
    assert encoded.input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(encoded.input_ids) == TEXT + "</s>"


def test_a_conversation_without_chat_template_is_refused() -> None:
    for mask in ("answer_only", "all"):
        with pytest.raises(ValueError, match="the student's tokenizer has no chat template; set student.chat_template"):
            encode_causal(record(), causal_tokenizer(None), mask, 512)
    assert "student.chat_template" in NO_TEMPLATE


def test_a_template_that_rewrites_earlier_turns_is_refused_for_answer_only() -> None:
    with pytest.raises(ValueError, match="not a prefix of the whole conversation"):
        encode_causal(record(), causal_tokenizer(BROKEN), "answer_only", 512)
    assert isinstance(encode_causal(record(), causal_tokenizer(BROKEN), "all", 512), Encoded)


def test_truncation_keeps_the_first_tokens_and_skips_examples_left_unlearned() -> None:
    tokenizer = causal_tokenizer()
    whole = encode_causal(record(), tokenizer, "answer_only", 512)
    first_learned = next(i for i, label in enumerate(whole.labels) if label != IGNORE)
    cut = encode_causal(record(), tokenizer, "answer_only", first_learned + 2)
    assert cut.input_ids == whole.input_ids[: first_learned + 2] and cut.labels == whole.labels[: first_learned + 2]
    assert supervised_tokens([cut]) == 2
    skip = encode_causal(record(), tokenizer, "answer_only", first_learned)
    assert skip == Skip("ex1", f"answer truncated away at max_seq_len {first_learned} "
                               f"({len(whole.input_ids)} tokens, first learned at {first_learned})")
    assert encode_causal(record([], origin="document"), tokenizer, "all", 1) == Skip(
        "ex1", f"answer truncated away at max_seq_len 1 ({_tokens_of(TEXT) + 1} tokens, first learned at 0)")
    assert encode_causal(record([], origin="document", context=""), tokenizer, "all", 8) == Skip(
        "ex1", "only position 0 is learned, which the shifted loss never predicts (1 tokens)")


def test_a_non_document_record_without_messages_is_skipped() -> None:
    assert encode_causal(record([], origin="dataset"), causal_tokenizer(), "all", 64) == Skip(
        "ex1", "no messages to learn (origin dataset)")


def test_encoding_is_deterministic_and_leaves_the_tokenizer_alone() -> None:
    tokenizer = causal_tokenizer()
    before = (tokenizer.backend_tokenizer.to_str(), tokenizer.chat_template, len(tokenizer))
    first, again = (encode_causal(record(), tokenizer, "answer_only", 40) for _ in range(2))
    assert first == again
    assert (tokenizer.backend_tokenizer.to_str(), tokenizer.chat_template, len(tokenizer)) == before


QUESTION = "Which valve opens first?"
ANSWER = "The red valve"


def qa_record(answer: str = ANSWER, question: str = QUESTION, **fields: Any) -> Example:
    fields.setdefault("answer_start", TEXT.index(answer))
    return record([], origin="dataset", question=question, answer=answer, **fields)


def test_extractive_positions_decode_to_the_answer() -> None:
    tokenizer = bert_tokenizer()
    encoded = encode_extractive(qa_record(), tokenizer, 128)
    assert isinstance(encoded, Encoded) and encoded.labels is None
    assert tokenizer.decode(encoded.input_ids[encoded.start: encoded.end + 1]) == ANSWER.lower()
    assert encoded.token_type_ids is not None and len(encoded.token_type_ids) == len(encoded.input_ids)
    assert encoded.token_type_ids[encoded.start] == 1  # the answer lies in the context segment


def test_extractive_encoding_leaves_the_tokenizer_alone() -> None:
    tokenizer = bert_tokenizer()
    before = tokenizer.backend_tokenizer.to_str()
    assert encode_extractive(qa_record(), tokenizer, 24) == encode_extractive(qa_record(), tokenizer, 24)
    assert tokenizer.backend_tokenizer.to_str() == before


def test_an_answer_beyond_the_window_is_skipped() -> None:
    tokenizer = bert_tokenizer()
    fits = encode_extractive(qa_record(), tokenizer, 128)
    assert isinstance(encode_extractive(qa_record(), tokenizer, fits.end + 2), Encoded)  # end + [SEP]
    skip = encode_extractive(qa_record(), tokenizer, fits.end + 1)
    assert isinstance(skip, Skip) and skip.reason.startswith(f"answer (context chars {TEXT.index(ANSWER)}-")
    assert f"beyond the window: max_seq_len {fits.end + 1}" in skip.reason


def test_extractive_records_that_cannot_be_placed_are_skipped() -> None:
    tokenizer = bert_tokenizer()
    assert encode_extractive(qa_record(answer_start=None), tokenizer, 128).reason.startswith("no answer_start")
    assert "does not point at the answer" in encode_extractive(qa_record(answer_start=3), tokenizer, 128).reason
    long = encode_extractive(qa_record(question="which valve opens first " * 10), tokenizer, 32)
    assert isinstance(long, Skip) and "leaves no room for the context at max_seq_len 32" in long.reason


def test_collate_pads_causal_batches_on_the_right() -> None:
    batch = [Encoded("a", (5, 6, 7), (IGNORE, 6, 7)), Encoded("b", (8,), (8,))]
    out = collate(batch, pad_id=1)
    assert set(out) == {"input_ids", "attention_mask", "labels"}
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 1, 1]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert all(t.dtype == torch.long for t in out.values())
    assert supervised_tokens(batch) == 2  # position 0 is never a target after the shift


def test_collate_extractive_batches_with_and_without_token_type_ids() -> None:
    bert = [encode_extractive(qa_record(), bert_tokenizer(), 128),
            encode_extractive(qa_record("Paris", "What is the capital?"), bert_tokenizer(), 40)]
    assert all(isinstance(e, Encoded) for e in bert) and len(bert[1].input_ids) == 40 < len(bert[0].input_ids)
    out = collate(bert, pad_id=0)
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids", "start_positions", "end_positions"}
    assert out["input_ids"].shape == out["token_type_ids"].shape == (2, max(len(e.input_ids) for e in bert))
    assert out["start_positions"].tolist() == [e.start for e in bert]
    assert out["end_positions"].tolist() == [e.end for e in bert]
    distil = bert_tokenizer(model_input_names=["input_ids", "attention_mask"])  # DistilBERT: no segment ids
    plain = encode_extractive(qa_record(), distil, 128)
    assert plain.token_type_ids is None and "token_type_ids" not in collate([plain], pad_id=0)
    assert supervised_tokens(bert) == 0
    with pytest.raises(ValueError, match="mixes"):
        collate([plain, Encoded("c", (1, 2), (1, 2))], pad_id=0)


def test_read_split_encodes_in_file_order_and_reports_skips(tmp_path: Path) -> None:
    records = [record(id="a"), record(CONVERSATION[:2], id="b"), record([], origin="document", id="c")]
    path = tmp_path / "train.jsonl"
    path.write_text(lines_text(records), encoding="utf-8")
    kept, skipped = read_split(path, causal_tokenizer(), "causal-lm", "answer_only", 512)
    assert [e.id for e in kept] == ["a", "c"]
    assert skipped == [Skip("b", f"no learned token ({_tokens(CONVERSATION[:2])} "
                                 "tokens, none of them learned)")]
    qa = tmp_path / "qa.jsonl"
    qa.write_text(lines_text([qa_record(), qa_record(answer_start=None)]), encoding="utf-8")
    kept, skipped = read_split(qa, bert_tokenizer(), "extractive-qa", "all", 128)
    assert len(kept) == 1 and kept[0].start is not None and len(skipped) == 1


def _tokens(messages: list[dict[str, str]]) -> int:
    return _tokens_of(causal_tokenizer().apply_chat_template(messages, tokenize=False))


def _tokens_of(text: str) -> int:
    return len(causal_tokenizer()(text, add_special_tokens=False).input_ids)


# Letters, digits, punctuation, whitespace and multi-byte characters; no "<|" so texts cannot
# spell a ChatML marker.
CHARS = st.characters(codec="utf-8", exclude_characters="<|\r", exclude_categories=("Cs", "Cc"))
TEXTS = st.text(st.one_of(CHARS, st.sampled_from(" \n.,?ée中")), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(question=TEXTS, answer=TEXTS.map(str.strip).filter(bool))
def test_learned_tokens_decode_to_the_answer_and_end_marker(question: str, answer: str) -> None:
    """Teacher answers are stripped; leading whitespace would share a token with the prompt's newline."""
    tokenizer = causal_tokenizer()
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    encoded = encode_causal(record(messages), tokenizer, "answer_only", 1024)
    assert learned_runs(tokenizer, encoded) == [answer + "<|im_end|>"]
