"""Chunking: exact spans of the joined pages, within the token budget of the consuming tokenizer,
covering the document in order, overlapping by about the target, cut at the strongest boundary."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from distill.runtime.sources.chunk import MIN_FILL, chunk_document
from distill.runtime.sources.records import Chunk, Page, chunk_id
from distill.runtime.sources.tokenizer import counter, load_tokenizer

TRAINING_TEXT = [
    "The pump runs twenty minutes before the valve opens. Check the pressure gauge first!",
    "Il faut vérifier la pression avant d'ouvrir la vanne. Café, crème, élève.",
    "ポンプは二十分間動きます。次にバルブが開きます。圧力を確認してください。",
    "Is the filter clean? Replace it every 300 hours (see table 4.2), or sooner.",
] * 20


@cache
def bpe() -> Tokenizer:
    """A byte-level BPE tokenizer (vocab 500) trained here, like the students' tokenizers."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(TRAINING_TEXT, trainer)
    return tokenizer


def bpe_count(text: str) -> int:
    return len(bpe().encode(text, add_special_tokens=False).ids)


def words(text: str) -> int:
    return len(text.split())


def _pages(*texts: str, numbers: tuple[int, ...] | None = None) -> list[Page]:
    numbers = numbers or tuple(range(1, len(texts) + 1))
    return [Page("docs/a.pdf", "f00d", n, t) for n, t in zip(numbers, texts, strict=True)]


def _texts(chunks: list[Chunk]) -> list[str]:
    return [c.text for c in chunks]


def check_invariants(pages: list[Page], chunks: list[Chunk], count: Callable[[str], int],
                     budget: int, overlap: int) -> None:
    """What every chunking must satisfy, checked from the outside."""
    joined = "\n\n".join(p.text for p in pages)
    if not joined.strip():
        assert chunks == []
        return
    offsets = [sum(len(p.text) + 2 for p in pages[:i]) for i in range(len(pages))]

    def page_at(position: int) -> int:
        return next(p.page for p, o in zip(pages, offsets, strict=True) if o <= position < o + len(p.text))

    for c in chunks:
        assert c.text == joined[c.char_start:c.char_end] == c.text.strip() != ""
        assert c.tokens == count(c.text) <= budget
        assert (c.page_start, c.page_end) == (page_at(c.char_start), page_at(c.char_end - 1))
        assert c.id == chunk_id("f00d", c.page_start, c.page_end, c.char_start, c.char_end, c.text)
        assert (c.source, c.sha256) == ("docs/a.pdf", "f00d")
    assert chunks[0].char_start == len(joined) - len(joined.lstrip())
    assert chunks[-1].char_end == len(joined.rstrip())
    for before, after in pairwise(chunks):
        assert before.char_start < after.char_start and before.char_end < after.char_end
        if after.char_start >= before.char_end:  # no overlap: only whitespace may lie between
            assert not joined[before.char_end:after.char_start].strip()
        else:
            assert count(joined[after.char_start:before.char_end]) <= overlap


# --- the invariants, on random documents ---------------------------------------------------------

# Fragments, not just characters: whole words and paragraph breaks make realistic structure likely.
PAGE_TEXT = st.lists(st.sampled_from(list("aaaabbbcdeé  \n\t.!?\"日。\u0301")
                                     + ["pump ", ". ", "。」", "\n\n", "\n \n"]),
                     max_size=150).map("".join)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(PAGE_TEXT, min_size=1, max_size=5), budget=st.integers(4, 48), data=st.data())
def test_invariants_with_a_bpe_tokenizer(texts: list[str], budget: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, budget - 1))
    pages = _pages(*texts)
    chunks = chunk_document(pages, bpe_count, budget, overlap)
    check_invariants(pages, chunks, bpe_count, budget, overlap)
    assert chunk_document(pages, bpe_count, budget, overlap) == chunks  # deterministic, same ids


ASCII_TEXT = st.lists(st.sampled_from(list("abcde  \n.!?") + ["pump ", ". ", "\n\n"]), max_size=150).map("".join)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(ASCII_TEXT, min_size=1, max_size=5), budget=st.integers(2, 30), data=st.data())
def test_word_counted_chunks_are_full_and_overlap_near_the_target(texts: list[str], budget: int,
                                                                 data: st.DataObject) -> None:
    """With one token per word every boundary is reachable, so fill and overlap are predictable:
    a chunk holds at least MIN_FILL of the budget (all but the last), and the overlap is within
    [MIN_FILL * target, target] unless the previous chunk is shorter than that."""
    overlap = data.draw(st.integers(0, budget - 1))
    pages = _pages(*texts, numbers=tuple(range(3, 3 + 2 * len(texts), 2)))
    chunks = chunk_document(pages, words, budget, overlap)
    check_invariants(pages, chunks, words, budget, overlap)
    joined = "\n\n".join(texts)
    for before, after in pairwise(chunks):
        assert before.tokens >= math.ceil(MIN_FILL * budget)
        shared = words(joined[after.char_start:before.char_end]) if after.char_start < before.char_end else 0
        assert min(math.ceil(MIN_FILL * overlap), before.tokens - 1) <= shared <= overlap


# --- where the cuts fall -------------------------------------------------------------------------

def test_golden_word_chunks() -> None:
    pages = _pages("One two three. Four five six seven.\n\nEight nine ten.", "Eleven twelve thirteen fourteen.")
    chunks = chunk_document(pages, words, 8, 4)
    assert [(c.text, c.page_start, c.page_end, c.char_start, c.char_end, c.tokens) for c in chunks] == [
        ("One two three. Four five six seven.", 1, 1, 0, 35, 7),
        ("Four five six seven.\n\nEight nine ten.", 1, 1, 15, 52, 7),
        ("Eight nine ten.\n\nEleven twelve thirteen fourteen.", 1, 2, 37, 86, 7),
    ]
    # the id is a hash of provenance and text: the same on every run and machine
    assert chunks[0].id == "44c66be62ad855f2e6c5edccfcaa9cf17f695d35a03955aa61b44f93fe2bf807"


def test_a_paragraph_end_wins_over_a_fuller_cut() -> None:
    text = "a b c d e.\n\nf g h i j k l m n o"
    assert _texts(chunk_document(_pages(text), words, 8, 0)) == ["a b c d e.", "f g h i j k l m", "n o"]


def test_a_sentence_end_wins_over_a_word_cut() -> None:
    text = "a b c d e! f g h i j k l m n o"
    assert _texts(chunk_document(_pages(text), words, 8, 0)) == ["a b c d e!", "f g h i j k l m", "n o"]


def test_a_boundary_too_early_to_fill_half_the_chunk_is_passed_over() -> None:
    text = "a b.\n\nc d e f g h i j k"
    assert _texts(chunk_document(_pages(text), words, 8, 0)) == ["a b.\n\nc d e f g h", "i j k"]


def test_overlap_starts_at_a_sentence_when_that_keeps_half_the_target() -> None:
    text = "a b c. d e f g h i j k l"
    chunks = chunk_document(_pages(text), words, 8, 6)
    assert _texts(chunks)[:2] == ["a b c. d e f g h", "d e f g h i j k"]  # not "c. d e f g h i j"


def test_every_page_join_is_a_paragraph_boundary_and_pages_are_numbered_from_the_pages() -> None:
    pages = _pages("a b c d e f", "g h i j k l", numbers=(4, 9))
    chunks = chunk_document(pages, words, 8, 0)
    assert [(c.text, c.page_start, c.page_end) for c in chunks] == [("a b c d e f", 4, 4), ("g h i j k l", 9, 9)]


def test_cjk_sentences_break_without_spaces() -> None:
    text = "ポンプは二十分間動きます。次にバルブが開きます。圧力を確認してください。"
    chunks = chunk_document(_pages(text), bpe_count, bpe_count("ポンプは二十分間動きます。次にバルブが開きます。"), 0)
    assert _texts(chunks) == ["ポンプは二十分間動きます。次にバルブが開きます。", "圧力を確認してください。"]


def test_cjk_closing_brackets_stay_with_their_sentence() -> None:
    chunks = chunk_document(_pages("彼は「行く。」と言った。次に進む。"), len, 10, 0)  # one token per character
    assert _texts(chunks) == ["彼は「行く。」", "と言った。次に進む。"]


def test_an_unbreakable_piece_is_cut_at_characters_without_overlap() -> None:
    blob = "QmFzZTY0IGRhdGEgdGhhdCBuZXZlciBlbmRz" * 8
    text = f"See {blob} here."
    chunks = chunk_document(_pages(text), bpe_count, 16, 4)
    check_invariants(_pages(text), chunks, bpe_count, 16, 4)
    pieces = [c for c in chunks if len("See ") <= c.char_start < len("See ") + len(blob)]
    assert len(pieces) >= 3
    assert "".join(c.text for c in pieces) == blob
    for before, after in pairwise(pieces):
        assert after.char_start == before.char_end


def test_a_character_cut_never_strands_a_combining_mark() -> None:
    text = "e\u0301" * 40  # é written as e + combining acute, no space anywhere
    chunks = chunk_document(_pages(text), bpe_count, 5, 0)
    check_invariants(_pages(text), chunks, bpe_count, 5, 0)
    assert all(c.text.startswith("e") for c in chunks)


def test_blank_document_has_no_chunks() -> None:
    assert chunk_document(_pages(" \n", "", "\t"), words, 8, 2) == []
    assert chunk_document([], words, 8, 2) == []


def test_surrounding_whitespace_and_empty_pages_are_left_out_of_chunks() -> None:
    pages = _pages("  a b", "", "c d  ")
    chunks = chunk_document(pages, words, 8, 0)
    assert [(c.text, c.page_start, c.page_end, c.char_start) for c in chunks] == [("a b\n\n\n\nc d", 1, 3, 2)]


@pytest.mark.parametrize(("budget", "overlap"), [(8, 8), (8, -1), (0, 0)])
def test_overlap_must_be_smaller_than_the_budget(budget: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="need 0 <= overlap_tokens < chunk_tokens"):
        chunk_document(_pages("a b"), words, budget, overlap)


def test_pages_of_several_documents_are_refused() -> None:
    pages = [Page("a.pdf", "1", 1, "x"), Page("b.pdf", "2", 1, "y")]
    with pytest.raises(ValueError, match="pages of one document"):
        chunk_document(pages, words, 8, 0)


def test_long_documents_are_counted_a_few_times_over_not_quadratically() -> None:
    sentence = "The pump runs twenty minutes before the valve opens. "
    pages = _pages(*[("\n\n".join(sentence * (1 + i % 5) for i in range(40))) for _ in range(10)])
    counted: list[int] = []

    def counting(text: str) -> int:
        counted.append(len(text))
        return bpe_count(text)

    chunks = chunk_document(pages, counting, 128, 16)
    check_invariants(pages, chunks, bpe_count, 128, 16)
    document = sum(len(p.text) for p in pages)
    assert len(chunks) > 50
    assert sum(counted) < 12 * document  # galloping + bisection, each probe about one chunk long
    assert len(counted) < 25 * len(chunks)


# --- counting with a saved tokenizer -------------------------------------------------------------------------------

def test_counts_without_special_tokens_or_truncation(tmp_path: Path) -> None:
    tokenizer = Tokenizer.from_str(bpe().to_str())
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                             special_tokens=[("<s>", 0), ("</s>", 1)])
    tokenizer.enable_truncation(max_length=4)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    text = "The pump runs twenty minutes before the valve opens."
    expected = bpe_count(text)
    assert expected > 4
    assert counter(load_tokenizer(tmp_path))(text) == expected
    assert counter(load_tokenizer(tmp_path / "tokenizer.json"))(text) == expected


def test_loading_needs_a_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no tokenizer.json at"):
        load_tokenizer(tmp_path)
