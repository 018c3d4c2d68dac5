"""The byte-level BPE trained on the documents: bounded on mangled text, exact on every text."""

from __future__ import annotations

from distill.runtime.sources.tokenizer import _words_capped, train_byte_bpe


def test_training_input_cuts_runs_without_spaces() -> None:
    assert _words_capped("[" * 130) == "[" * 64 + " " + "[" * 64 + " " + "[" * 2
    assert _words_capped("a normal sentence, with words.") == "a normal sentence, with words."


def test_a_mangled_document_trains_and_still_round_trips() -> None:
    """A 200,000-character run of brackets (a broken document) took 95 s to train on before
    runs were cut; the tokenizer still encodes and decodes it exactly."""
    text = "[" * 100_000 + "]" * 100_000
    tokenizer = train_byte_bpe([text, "The pump lifts water."], 300)
    assert tokenizer.decode(tokenizer.encode(text).ids) == text
