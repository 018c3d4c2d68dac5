"""The tokenizer chunks are counted in: the student's own, or, for a ``random`` student without
one, a byte-level BPE trained on the documents (the same one the model will be built with)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# Byte-level BPE starts from the 256 byte symbols; special tokens for padding and end of text.
SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>")


def train_byte_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE (GPT-2 style pre-tokenization, so llama.cpp's gpt2 pre-tokenizer matches)
    trained on ``texts``; deterministic for the same texts and vocab size."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(map(_words_capped, texts), trainer=trainer)
    return tokenizer


# BPE training time grows with the square of a word's length: a 200,000-character run of "[" (a
# mangled document) took 95 s to train on here, the same text cut every 64 characters 0.04 s.
# Words that long are never merged whole anyway; the trained tokenizer still encodes every text.
_LONG_RUN = re.compile(r"\S{64}")


def _words_capped(text: str) -> str:
    """``text`` with a space after every 64 characters that have none between them."""
    return _LONG_RUN.sub(lambda run: run.group(0) + " ", text)


def counter(tokenizer: Tokenizer) -> Callable[[str], int]:
    """Tokens in a text, without special tokens (they are added per example, not per chunk).

    Truncation and padding saved with the tokenizer are turned off (on a copy): a capped count
    would make every long candidate chunk look like it fits.
    """
    counting = Tokenizer.from_str(tokenizer.to_str())
    counting.no_truncation()
    counting.no_padding()
    return lambda text: len(counting.encode(text, add_special_tokens=False).ids)


def load_tokenizer(path: Path) -> Tokenizer:
    """``tokenizer.json``, or a folder holding one.

    Raises:
        FileNotFoundError: when there is none (slow-only tokenizers need one converted with
            transformers first).
    """
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}")
    return Tokenizer.from_file(str(file))
