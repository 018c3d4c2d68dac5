"""Grounding: answer spans that map back to the original context text, and unigram support (the
question check, identifiers and inflections: test_grounding_rules.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.runtime.synthesis.grounding import STOPWORDS, find_span, support

CONTEXT = "The pump runs 20 minutes. Then the valve opens."


def _found(answer: str, context: str) -> str | None:
    span = find_span(answer, context)
    return None if span is None else context[span[0]:span[1]]


# --- find_span -----------------------------------------------------------------------------------

def test_exact_match_is_the_first_occurrence() -> None:
    assert find_span("the", "the pump, the valve") == (0, 3)
    assert find_span("20 minutes", CONTEXT) == (14, 24)
    assert find_span("valve", "Valve and valve") == (10, 15)  # exact beats the earlier casefolded match


@pytest.mark.parametrize(("answer", "context", "expected"), [
    ("pump runs", "The  PUMP\u00a0 runs", "PUMP\u00a0 runs"),  # case, no-break space, a run of spaces
    ("twenty minutes", "runs twenty\n\t minutes.", "twenty\n\t minutes"),  # newline and tab in the run
    ('"20 minutes."', "It runs 20 minutes.", "20 minutes"),  # answer's surrounding quotes and period
    ("\u201cthe valve\u201d", "Then the valve opens.", "the valve"),  # typographic quotes around the answer
    ("don't stop", "Please don\u2019t stop the pump.", "don\u2019t stop"),  # typographic apostrophe inside
    ("pre-heat", "First pre\u2013heat the tank.", "pre\u2013heat"),  # en dash for a hyphen
    ("a - b", "set a \u2014 b now", "a \u2014 b"),  # em dash
    ("café", "the cafe\u0301 opens", "cafe\u0301"),  # composed answer, decomposed context
    ("cafe\u0301", "the café opens", "café"),  # decomposed answer, composed context
    ("file", "open the \ufb01le now", "\ufb01le"),  # ligature: 1 original char -> 2 normalized chars
    ("abc 123", "ＡＢＣ　１２３!", "ＡＢＣ　１２３"),  # full-width letters, digits and space
    ("strasse", "die Straße hier", "Straße"),  # casefold expands ß to ss
])
def test_normalized_match_maps_back_to_the_original_text(answer: str, context: str, expected: str) -> None:
    assert _found(answer, context) == expected


def test_span_offsets_point_into_the_original_context() -> None:
    context = "Intro.\n\n  The   \ufb01nal  VALVE\u00a0opens."
    span = find_span("final valve", context)
    assert span == (16, 27)  # "Intro.\n\n" 8 + "  The   " 8; "\ufb01nal  VALVE" is 11 chars
    start, end = span
    assert context[start:end] == "\ufb01nal  VALVE"


@pytest.mark.parametrize(("answer", "context"), [
    ("an hour", CONTEXT),
    ("", CONTEXT),
    ("   ", CONTEXT),
    ("?!", CONTEXT),  # nothing left once the punctuation goes
    ("20 minutes", ""),
    ("20minutes", CONTEXT),  # whitespace is collapsed, never removed
])
def test_absent_or_empty_answers_have_no_span(answer: str, context: str) -> None:
    assert find_span(answer, context) is None


@settings(max_examples=200, deadline=None)
@given(context=st.text(alphabet="aAbB \n\t.\u2019'\u00a0\ufb01", max_size=30), data=st.data())
def test_every_span_is_a_nonempty_slice_that_normalizes_like_the_answer(context: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(context)))
    answer = context[start:data.draw(st.integers(start, len(context)))]
    span = find_span(answer, context)
    if span is not None:
        assert 0 <= span[0] < span[1] <= len(context)
        assert find_span(context[span[0]:span[1]], context) is not None
    if answer.strip(" \n\t.\u2019'\u00a0"):
        assert span is not None  # a piece of the context is always found


# --- support -------------------------------------------------------------------------------------

def test_support_is_the_share_of_content_words_found() -> None:
    assert support("The pump runs 20 minutes.", CONTEXT) == 1.0
    assert support("The pump runs 30 minutes.", CONTEXT) == 0.75  # pump, runs, minutes of pump, runs, 30, minutes
    assert support("It closes the valve", CONTEXT) == 0.5  # valve of closes, valve


def test_support_ignores_order_case_and_unicode_form() -> None:
    assert support("MINUTES, 20: the pump RUNS", CONTEXT) == 1.0
    assert support("\ufb01nal café", "the final cafe\u0301") == 1.0


def test_repeated_words_count_once() -> None:
    assert support("pump pump pump lever", "the pump") == 0.5


def test_numbers_count_when_missing_and_are_left_out_when_copied() -> None:
    assert support("The pump runs 30 minutes.", CONTEXT) == 0.75  # an invented number is unsupported
    assert support("21", CONTEXT) == 0.0
    assert support("20", CONTEXT) == 0.0  # copied alone it proves nothing: nothing is counted
    assert support("The pump runs 20 minutes.", CONTEXT) == 1.0  # pump, runs, minutes; 20 left out
    assert "one" not in STOPWORDS and "not" not in STOPWORDS  # they change what an answer says


@pytest.mark.parametrize("answer", ["", "   ", "the of and", "?!", "It is what it is."])
def test_an_answer_without_content_words_has_no_support(answer: str) -> None:
    assert support(answer, CONTEXT) == 0.0


def test_empty_context_supports_nothing() -> None:
    assert support("pump", "") == 0.0


def test_words_match_whole_not_as_substrings() -> None:
    assert support("pum", "the pump") == 0.0
    assert support("pumping station", "the pump station") == 1.0  # an inflection, not a substring
    assert support("stations", "the station") == 1.0
    assert support("statio", "the stations") == 0.0
