"""Grounding that rejects junk: a question must be a question, an answer needs an ordinary content
word (identifiers and numbers copied from the chunk prove nothing), words match across light
inflections, and made-up attributes lose support. The fixture test measures the rules on real
teacher pairs labelled by hand (tests/fixtures/grounding)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.runtime.sources.records import Chunk, chunk_id
from distill.runtime.synthesis.examples import Grounding, chunk_examples
from distill.runtime.synthesis.grounding import (
    COPIED_STATEMENT,
    NOT_A_QUESTION,
    is_identifier,
    is_question,
    judge_answer,
    judge_question,
    measure,
    repeats,
    restates,
    support,
)

MANUAL = ("The parameter nLineGroup is used to specify the line group that defines the pens. "
          "The distance between the two points dblLeft and dblRight measures the length of the line. "
          "Pen pA draws the outline; it is opened by OpenPen and stopped after 20 seconds.")


# --- is_question ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "What is the purpose of the parameter nLineGroup?",
    "What is X",  # no "?", but a question word first
    "how does the pen draw the outline",
    "Is the line group required",
    "List the steps.",  # a request
    "Explain how the pens are defined.",
    "Describe the outline",
    "In which unit is the distance measured",  # preposition, then the question word
    "According to the text, what does pA draw.",
    "Question 2: what does dblRight measure",  # a label before the question
    "1. Name the parameter that defines the pens.",
    "The line group is defined by?",  # a "?" makes it a question, whatever comes first
    "¿Qué es nLineGroup？",  # full-width question mark
])
def test_questions_and_requests_are_questions(text: str) -> None:
    assert is_question(text)


@pytest.mark.parametrize("text", [
    "The distance between the two points that measure the length of the line.",
    "dblRight",
    "Pen pA draws the outline.",
    "List of parameters",  # a noun phrase, not a request
    "Name of the pen.",
    "",
    "   ",
    "?",  # nothing asked
    "1.",
    "Question: The parameter nLineGroup.",
])
def test_statements_and_fragments_are_not_questions(text: str) -> None:
    assert not is_question(text)


# --- identifiers ---------------------------------------------------------------------------------

def test_a_sentence_of_the_chunk_with_a_question_mark_asks_nothing() -> None:
    # SmolLM2 told to ask about a sentence of the gnuplot manual wrote the sentence and a "?"
    assert judge_question("The distance between the two points dblLeft and dblRight measures the ?", MANUAL) \
        == COPIED_STATEMENT
    assert judge_question("Pen pA draws the outline; it is opened by OpenPen?", MANUAL) == COPIED_STATEMENT
    assert judge_question("What is used to specify the line group that defines the pens?", MANUAL) is None
    assert judge_question("Pen pA draws the outline?", MANUAL) is None  # too short to tell from a question
    assert judge_question("The pen is made of gold and silver?", MANUAL) is None  # not the chunk's own words
    assert judge_question("The distance between the two points.", MANUAL) == NOT_A_QUESTION


@pytest.mark.parametrize(("token", "expected"), [
    ("dblRight", True), ("nLineGroup", True), ("pA", True), ("size_is", True), ("x11", True),
    ("1998", True), ("HRESULT", True), ("IDL", True), ("x", True),
    ("pen", False), ("Pen", False), ("Outline", False), ("colored", False),
])
def test_identifiers(token: str, expected: bool) -> None:
    assert is_identifier(token) is expected


# --- answers -------------------------------------------------------------------------------------

def test_a_lone_identifier_is_junk_even_when_copied() -> None:
    assert support("dblRight", MANUAL) == 0.0  # was 1.0: the one word is in the chunk
    assert judge_answer("dblRight", MANUAL, 0.5) == (0.0, "answer has no content word beyond identifiers and numbers")
    assert judge_answer("dblRight, 20", MANUAL, 0.0)[1] is not None  # whatever the threshold
    assert judge_answer("The of it.", MANUAL, 0.0) == (0.0, "answer has no content word")
    assert judge_answer("", MANUAL, 0.0) == (0.0, "answer has no content word")


def test_made_up_attributes_lose_the_support_of_copied_names() -> None:
    found = measure("pA, which is a light-colored pen", MANUAL)
    assert found.words == ("light", "colored", "pen") and found.missing == ("light", "colored")
    assert found.score == pytest.approx(1 / 3)  # was 0.5 with "pA" counted as found
    assert judge_answer("pA, which is a light-colored pen", MANUAL, 0.5)[1] == "answer support 0.33 < min_support 0.5"


def test_invented_identifiers_and_numbers_count_as_missing() -> None:
    found = measure("The pen pB stops after 30 seconds.", MANUAL)
    assert found.missing == ("pb", "30") and found.score == pytest.approx(4 / 6)  # pen, stops, after, seconds found


def test_inflections_match_so_rephrasings_are_not_punished() -> None:
    answer = "nLineGroup specifies the line groups defining the pen; pens are stopping and opening."
    assert measure(answer, MANUAL).missing == ()
    assert support("used, uses, using", "use it") == 1.0  # the "e" is restored
    assert support("entries specified", "one entry to specify") == 1.0  # -ies, -ied
    assert support("running", "it runs") == 1.0  # the doubled consonant
    assert support("string", "str") == 0.0  # a base keeps a vowel: "string" is not "str"ing
    assert support("used", "let us") == 0.0  # nor 2 letters: "used" is not "us"ed


def test_clitics_are_not_words() -> None:
    assert measure("The pen\u2019s outline doesn't stop.", "the pen outline does not stop").missing == ()


def test_the_good_answer_from_the_real_teacher_is_kept() -> None:
    answer = "The parameter nLineGroup is used to specify the line group to define the pens."
    score, reason = judge_answer(answer, MANUAL, 0.5)
    assert reason is None and score == 1.0  # was 0.67 without inflections: "used", "define", "pens"


def test_a_looping_answer_repeats_itself() -> None:
    assert repeats("It defines the Caml view. The Caml view is defined in the IDL file, and the Caml view is "
                   "defined in the IDL file.")
    assert repeats("This is a story about a story about a story")
    assert not repeats("The pen draws the outline, and the pen stops after 20 seconds.")  # 3 words repeat, not 5
    assert not repeats("")
    answer = "nLineGroup specifies the line group. nLineGroup specifies the line group."
    assert judge_answer(answer, MANUAL, 0.5)[1] == "answer repeats itself (a run of 5 words occurs twice)"


def test_an_answer_that_only_restates_its_question_says_nothing() -> None:
    question = "What is the IDL pointer type?"
    assert restates("Yes, the type of IDL pointer is IDL pointer.", question)  # "yes" answers no "what"
    assert restates("The IDL pointer types.", question)  # inflections match
    assert not restates("Yes, the line group is required.", "Is the line group required?")  # a yes/no question
    assert not restates("No.", "Does the pen stop?")
    assert not restates("COMSPEC sets the shell.", "Which variable sets the shell?")  # the name is the news
    assert not restates("It is an option type.", question)
    restated = judge_answer("The pen draws.", MANUAL, 0.5, "What does the pen draw?")
    assert restated[1] == "answer only restates the question"
    assert judge_answer("The pen draws.", MANUAL, 0.5)[1] is None  # no question given: not checked


# --- in the stage's grounding --------------------------------------------------------------------

def _chunk() -> Chunk:
    return Chunk(chunk_id("sha", 1, 1, 0, len(MANUAL), MANUAL), MANUAL, "manual.pdf", "sha", 1, 1, 0, len(MANUAL),
                 len(MANUAL.split()))


def test_qa_items_are_judged_for_every_student() -> None:
    reply = ('[{"question": "The distance between the two points.", "answer": "dblRight"},'
             ' {"question": "Which point is on the right", "answer": "dblRight"},'
             ' {"question": "What does nLineGroup specify?",'
             ' "answer": "It specifies the line group defining the pens."}]')
    for extractive, kept in ((False, ["What does nLineGroup specify?"]),
                             (True, ["Which point is on the right"])):
        examples, rejections = chunk_examples(_chunk(), [reply], "qa", 1, Grounding(extractive, 0.5), "g")
        assert [e.question for e in examples] == kept
        assert rejections[0].reason == NOT_A_QUESTION  # a non-question fails the span path too
        if not extractive:
            assert rejections[1].reason == "answer has no content word beyond identifiers and numbers"


def test_conversations_check_assistant_turns_and_leave_user_turns_free() -> None:
    reply = ('{"messages": [{"role": "user", "content": "Tell me about nLineGroup."},'
             ' {"role": "assistant", "content": "It specifies the line group that defines the pens."},'
             ' {"role": "user", "content": "And the right point"},'
             ' {"role": "assistant", "content": "dblRight"}]}')
    examples, rejections = chunk_examples(_chunk(), [reply], "conversation", 2, Grounding(False, 0.5), "g")
    assert len(examples) == 1 and len(examples[0].messages) == 2
    assert rejections[0].reason == ("conversation cut after 1 of 2 exchanges: next answer has no content word "
                                    "beyond identifiers and numbers")
    first = reply.replace("It specifies the line group that defines the pens.", "A light-colored marker.")
    examples, rejections = chunk_examples(_chunk(), [first], "conversation", 2, Grounding(False, 0.5), "g")
    assert examples == [] and rejections[0].reason == "first answer support 0.00 < min_support 0.5"


# --- on real teacher pairs, labelled by hand -----------------------------------------------------

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "grounding"


def test_precision_and_recall_on_the_labelled_teacher_pairs() -> None:
    """The rules over SmolLM2-135M-Instruct's own pairs (benchmarks/grounding.py prints the table).
    Measured at min_support 0.5 on 48 pairs (5 good): new rule precision 4/18 (0.22), recall 4/5,
    bad pairs rejected 29/43 (0.67); the old rule 5/24 (0.21), 5/5 and 24/43 (0.56). Word overlap
    cannot see a wrong answer made of the chunk's own words (most of the bad pairs still accepted),
    so the floors guard what the rules do see: bad pairs rejected (one pair of margin), the good
    ones kept, and precision no worse than the old rule's."""
    chunks = {c["id"]: c["text"] for c in map(json.loads, (FIXTURE / "chunks.jsonl").read_text("utf-8").splitlines())}
    pairs = [json.loads(line) for line in (FIXTURE / "smollm2_pairs.jsonl").read_text("utf-8").splitlines()]
    accepted = [p for p in pairs if judge_question(p["question"], chunks[p["chunk_id"]]) is None
                and judge_answer(p["answer"], chunks[p["chunk_id"]], 0.5, p["question"])[1] is None]
    good = [p for p in pairs if p["label"] == "good"]
    bad = len(pairs) - len(good)
    kept_good = sum(p["label"] == "good" for p in accepted)
    assert len(pairs) == 48 and len(good) == 5
    assert kept_good / len(accepted) >= 5 / 24  # precision, measured 4/18; the old rule's 5/24
    assert kept_good / len(good) >= 4 / 5  # recall, measured 4/5
    assert (bad - (len(accepted) - kept_good)) / bad >= 28 / 43  # bad rejected, measured 29/43
