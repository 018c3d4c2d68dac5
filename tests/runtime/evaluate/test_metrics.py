"""Metric arithmetic against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from distill.runtime.evaluate.metrics import (
    best_span,
    exact_match,
    latency,
    nll_from_logits,
    normalize_answer,
    perplexity,
    rouge_l,
    token_f1,
)


def test_normalize_and_exact_match() -> None:
    assert normalize_answer("The  Cat, sat!\n") == "cat sat"
    assert exact_match("the cat sat.", "Cat sat") == 1.0
    assert exact_match("cat sat down", "cat sat") == 0.0


def test_token_f1() -> None:
    # pred {cat, sat}, ref {cat, sat, down}: 2 common, P = 1, R = 2/3, F1 = 2·(2/3)/(5/3) = 0.8
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(0.8)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("the", "cat") == 0.0  # "the" normalizes to nothing
    # bag of words: a repeated word counts as often as it occurs in both (min)
    assert token_f1("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_rouge_l_is_rouge_scores() -> None:
    """rouge-score's ROUGE-L, worked by hand. Articles count (SQuAD normalization used to drop
    them): pred cat sat on mat (4), ref the cat lay on the mat (6), LCS cat-on-mat = 3, P = 3/4,
    R = 3/6, F = 2·(3/4)·(1/2)/(5/4) = 0.6; it was 0.75 with the articles removed (R = 3/4)."""
    assert rouge_l("cat sat on mat", "the cat lay on the mat") == pytest.approx(0.6)
    assert rouge_l("the cat", "a cat") == pytest.approx(0.5)  # LCS 1 of 2 each side; was 1.0
    # lower case, anything but [a-z0-9] a word break: "Mat!" = "mat", "on-line" = "on line"
    assert rouge_l("Cat, on-line Mat!", "cat on line mat") == 1.0
    # no stemming: "sitting" is not "sit"
    assert rouge_l("cats sitting", "cats sit") == pytest.approx(0.5)
    # order matters for ROUGE-L but not for token F1
    assert rouge_l("mat on cat", "cat on mat") == pytest.approx(1 / 3)
    assert token_f1("mat on cat", "cat on mat") == 1.0
    # no words on a side scores 0, even on both (token F1 calls two empty answers equal)
    assert rouge_l("", "") == 0.0 and rouge_l("!!", "cat") == 0.0


def test_nll_and_perplexity() -> None:
    # position 1 is predicted by row 0: p(1) = 3/(1+3) -> ln(4/3); position 2 by row 1: p(0) = 1/2 -> ln 2
    logits = np.array([[0.0, math.log(3.0)], [0.0, 0.0], [5.0, -5.0]])
    total, count = nll_from_logits(logits, [0, 1, 0], [-100, 1, 0])
    assert count == 2 and total == pytest.approx(math.log(8 / 3))
    assert perplexity(total, count) == pytest.approx(math.sqrt(8 / 3))
    # label at position 0 is never predicted; masked positions are skipped
    assert nll_from_logits(logits, [0, 1, 0], [0, -100, -100]) == (0.0, 0)
    assert perplexity(0.0, 0) is None


def test_best_span() -> None:
    start, end, allowed = [5.0, 0.0, 1.0, 0.0], [0.0, 0.0, 3.0, 4.0], [False, True, True, True]
    # token 0 (the question) is excluded despite its start logit 5; best allowed pair is (2, 3): 1 + 4
    assert best_span(start, end, allowed, max_len=2) == (2, 3)
    # max_len 1 forces start == end: (2, 2) = 4 and (3, 3) = 4 tie; the first wins
    assert best_span(start, end, allowed, max_len=1) == (2, 2)
    assert best_span(start, end, [False] * 4) is None


def test_latency() -> None:
    # median 0.2 s for 10 tokens: 20 ms per token, 50 tokens/s
    assert latency([0.3, 0.1, 0.2], 10) == pytest.approx({"latency_ms": 20.0, "tokens_per_s": 50.0})
