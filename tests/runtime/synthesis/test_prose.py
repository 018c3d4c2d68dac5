"""Prose replies: the "Question: ... Answer: ..." formats small teachers write instead of JSON are
read into checked items; text without labelled pairs yields none, and JSON still wins."""

from __future__ import annotations

import pytest

from distill.runtime.synthesis.parse import parse_items
from distill.runtime.synthesis.prose import prose_pairs

# Shapes SmolLM2-135M-Instruct wrote on real manuals (issue 19), trimmed.
LABELLED = """Here are some questions about the text:

Question: What is the purpose of the parameter nLineGroup?
Answer: The parameter nLineGroup is used to specify the line group
to define the pens.

Question: Which file holds the pens?
Answer: The pen table file."""

NUMBERED = """1. Question: How long does the pump run?
   Answer: It runs for 20 minutes.
2. Question: When does the alarm sound?
   Answer: When the pressure stays under 2 bar."""

SHORT_LABELS = ("Q1: How long is the reset switch held?\nA1: For 5 seconds.\n\n"
                "Q2: What starts the pump?\nA2: A low tank level.")

BOLD = "**Question 1:** What does the controller check?\n**Answer:** The pressure, after 20 minutes."

UNLABELLED_QUESTION = "1. What does the controller check?\nAnswer: The pressure.\n2. What sounds?\nAnswer: The alarm."


@pytest.mark.parametrize(("text", "expected"), [
    (LABELLED, [("What is the purpose of the parameter nLineGroup?",
                 "The parameter nLineGroup is used to specify the line group to define the pens."),
                ("Which file holds the pens?", "The pen table file.")]),
    (NUMBERED, [("How long does the pump run?", "It runs for 20 minutes."),
                ("When does the alarm sound?", "When the pressure stays under 2 bar.")]),
    (SHORT_LABELS, [("How long is the reset switch held?", "For 5 seconds."),
                    ("What starts the pump?", "A low tank level.")]),
    (BOLD, [("What does the controller check?", "The pressure, after 20 minutes.")]),
    (UNLABELLED_QUESTION, [("What does the controller check?", "The pressure."), ("What sounds?", "The alarm.")]),
])
def test_labelled_pairs_are_read(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(p["question"], p["answer"]) for p in prose_pairs(text)] == expected
    parsed = parse_items(text, "qa", 1)
    assert parsed.form == "prose" and parsed.clean and not parsed.rejected
    assert [(i["question"], i["answer"]) for i in parsed.items] == expected


@pytest.mark.parametrize("text", [
    "The distance between the two points that measure the length of the line.",
    "Question: What is the pump for?\n\nThe text does not say.",  # a question with no answer label
    "Answer: 20 minutes.",  # an answer with no question
    "A. Pumps are covered in chapter 2.\nB. Valves in chapter 3.",  # list letters are not labels
    "",
])
def test_text_without_labelled_pairs_yields_nothing(text: str) -> None:
    assert prose_pairs(text) == []
    parsed = parse_items(text, "qa", 1)
    assert parsed.form == "json" and not parsed.items and parsed.error


def test_json_wins_over_prose() -> None:
    reply = 'Question: ignored?\nAnswer: yes.\n[{"question": "What runs?", "answer": "The pump."}]'
    parsed = parse_items(reply, "qa", 1)
    assert parsed.form == "json" and [i["question"] for i in parsed.items] == ["What runs?"]


def test_prose_items_are_checked_like_json_items() -> None:
    parsed = parse_items("Question: Why?\nAnswer: " + "x" * 5000, "qa", 1)
    assert parsed.form == "prose" and not parsed.items and not parsed.clean
    assert "answer: is 5000 characters long" in parsed.rejected[0].reason


def test_conversations_are_not_read_from_prose() -> None:
    assert parse_items(LABELLED, "conversation", 2).items == ()
