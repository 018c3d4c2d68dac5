"""Dataset sources: SQuAD and JSONL files -> QA examples whose answers are exact spans of their
contexts; every item left out is named with its place in the file and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.runtime.sources.datasets import UNANSWERABLE, read_dataset
from distill.runtime.sources.records import Answer, QAExample, Skipped, SourceError

CONTEXT = "The pump runs 20 minutes. Then the valve opens."


def _squad(*qas: dict[str, Any], context: str = CONTEXT) -> dict[str, Any]:
    return {"version": "v2.0", "data": [{"title": "Pump", "paragraphs": [{"context": context, "qas": list(qas)}]}]}


def _read(tmp_path: Path, content: str | bytes, name: str = "qa.json", fmt: str = "auto") -> list[QAExample | Skipped]:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return list(read_dataset(path, name, "abc123", fmt))


def _write_squad(tmp_path: Path, document: Any) -> list[QAExample | Skipped]:
    return _read(tmp_path, json.dumps(document))


def _jsonl(tmp_path: Path, *rows: Any) -> list[QAExample | Skipped]:
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    return _read(tmp_path, "\n".join(lines) + "\n", name="qa.jsonl")


def _skips(items: list[QAExample | Skipped]) -> list[tuple[str | None, str]]:
    return [(item.location, item.reason) for item in items if isinstance(item, Skipped)]


def _examples(items: list[QAExample | Skipped]) -> list[QAExample]:
    return [item for item in items if isinstance(item, QAExample)]


# --- SQuAD ---------------------------------------------------------------------------------------

def test_squad_file_reads_into_traceable_examples(tmp_path: Path) -> None:
    items = _write_squad(tmp_path, _squad(
        {"id": "q1", "question": " How long does the pump run? ",
         "answers": [{"text": "20 minutes", "answer_start": 14}]},
        {"id": "q2", "question": "What opens?", "answers": [{"text": "the valve", "answer_start": 31},
                                                             {"text": "valve", "answer_start": 35}]}))
    assert items == [
        QAExample("q1", "How long does the pump run?", CONTEXT, (Answer("20 minutes", 14),), "qa.json", "abc123",
                  "data[0].paragraphs[0].qas[0]"),
        QAExample("q2", "What opens?", CONTEXT, (Answer("the valve", 31), Answer("valve", 35)), "qa.json", "abc123",
                  "data[0].paragraphs[0].qas[1]"),
    ]


def test_squad2_unanswerable_questions_are_skipped_and_reported(tmp_path: Path) -> None:
    items = _write_squad(tmp_path, _squad(
        {"id": "q1", "question": "How long?", "answers": [{"text": "20 minutes", "answer_start": 14}],
         "is_impossible": False},
        {"id": "q2", "question": "Who built it?", "answers": [], "is_impossible": True,
         "plausible_answers": [{"text": "pump", "answer_start": 4}]}))
    assert [e.id for e in _examples(items)] == ["q1"]
    assert _skips(items) == [("data[0].paragraphs[0].qas[1]", UNANSWERABLE)]
    assert UNANSWERABLE == "unanswerable (SQuAD 2.0)"
    assert [s.excluded for s in items if isinstance(s, Skipped)] == [True]  # never fails the stage


def test_wrong_start_is_repaired_when_the_text_occurs_once(tmp_path: Path) -> None:
    items = _write_squad(tmp_path, _squad({"id": "q", "question": "How long?",
                                           "answers": [{"text": "20 minutes", "answer_start": 12}]}))
    [example] = _examples(items)
    assert example.answers == (Answer("20 minutes", 14, repaired_from=12),)
    assert CONTEXT[14:24] == "20 minutes"


def test_wrong_start_is_not_guessed_when_the_text_occurs_twice(tmp_path: Path) -> None:
    items = _write_squad(tmp_path, _squad({"id": "q", "question": "Which?",
                                           "answers": [{"text": "the", "answer_start": 5}]},
                                          context="the pump, the valve"))
    reason = ("answers[0]: answer_start 5 does not point at 'the', which occurs more than once in the context: "
              "cannot tell which is meant")
    assert _skips(items) == [("data[0].paragraphs[0].qas[0]", reason)]


def test_answer_absent_from_the_context_is_skipped(tmp_path: Path) -> None:
    items = _write_squad(tmp_path, _squad({"id": "q", "question": "How long?",
                                           "answers": [{"text": "20 Minutes", "answer_start": 14}]}))
    assert _skips(items) == [("data[0].paragraphs[0].qas[0]", "answers[0]: '20 Minutes' does not occur in the context")]


def test_invalid_answers_are_reported_and_valid_ones_kept(tmp_path: Path) -> None:
    items = _write_squad(tmp_path, _squad({"id": "q", "question": "How long?", "answers": [
        {"text": "20 minutes", "answer_start": 14}, {"text": "an hour", "answer_start": 0},
        {"text": "20", "answer_start": "14"}]}))
    assert _examples(items)[0].answers == (Answer("20 minutes", 14),)
    assert _skips(items) == [
        ("data[0].paragraphs[0].qas[0]", "answers[1]: 'an hour' does not occur in the context"),
        ("data[0].paragraphs[0].qas[0]", "answers[2]: 'answer_start' must be a non-negative integer, got '14'"),
    ]


@pytest.mark.parametrize(("qa", "reason"), [
    ({"id": "q", "answers": [{"text": "pump", "answer_start": 4}]}, "missing 'question'"),
    ({"id": "q", "question": "   ", "answers": [{"text": "pump", "answer_start": 4}]}, "'question' is empty"),
    ({"id": "q", "question": 7, "answers": [{"text": "pump", "answer_start": 4}]},
     "'question' must be a string, got a number"),
    ({"id": "q", "question": "What?"}, "missing 'answers'"),
    ({"id": "q", "question": "What?", "answers": []}, "no answers"),
    ({"id": "q", "question": "What?", "answers": "pump"}, "'answers' must be a list, got a string"),
    ({"id": "q", "question": "What?", "answers": [{"text": "pump"}]}, "answers[0]: missing 'answer_start'"),
    ({"id": "q", "question": "What?", "answers": [{"answer_start": 4}]}, "answers[0]: missing 'text'"),
    ({"id": "q", "question": "What?", "answers": [{"text": "pump", "answer_start": True}]},
     "answers[0]: 'answer_start' must be a non-negative integer, got True"),
    ({"id": "q", "question": "What?", "answers": [{"text": "pump", "answer_start": -4}]},
     "answers[0]: 'answer_start' must be a non-negative integer, got -4"),
    ({"id": "q", "question": "What?", "answers": [7]}, "answers[0]: expected an object or a string, got a number"),
    ({"id": ["q"], "question": "What?", "answers": [{"text": "pump", "answer_start": 4}]},
     "'id' must be a string or an integer, got a list"),
    ({"id": "q", "question": "What?", "answers": [], "is_impossible": "yes"},
     "'is_impossible' must be true or false, got 'yes'"),
    ("a question", "expected an object, got a string"),
])
def test_malformed_question_is_skipped_with_its_reason(tmp_path: Path, qa: Any, reason: str) -> None:
    items = _write_squad(tmp_path, _squad(qa))
    assert items == [Skipped(source="qa.json", reason=reason, location="data[0].paragraphs[0].qas[0]")]


def test_malformed_articles_and_paragraphs_are_skipped_whole(tmp_path: Path) -> None:
    good = {"id": "q", "question": "How long?", "answers": [{"text": "20 minutes", "answer_start": 14}]}
    document = {"data": [
        {"title": "no paragraphs"},
        {"paragraphs": [{"qas": [good]}, {"context": CONTEXT, "qas": {}}, "text", {"context": CONTEXT, "qas": [good]}]},
    ]}
    items = _write_squad(tmp_path, document)
    assert _skips(items) == [
        ("data[0]", "expected an object with a 'paragraphs' list"),
        ("data[1].paragraphs[0]", "missing 'context'"),
        ("data[1].paragraphs[1]", "'qas' must be a list, got an object"),
        ("data[1].paragraphs[2]", "expected an object, got a string"),
    ]
    assert [e.location for e in _examples(items)] == ["data[1].paragraphs[3].qas[0]"]


def test_repeated_id_is_skipped(tmp_path: Path) -> None:
    qa = {"id": "q1", "question": "How long?", "answers": [{"text": "20 minutes", "answer_start": 14}]}
    items = _write_squad(tmp_path, _squad(qa, qa))
    assert len(_examples(items)) == 1
    assert _skips(items) == [("data[0].paragraphs[0].qas[1]",
                              "duplicate id 'q1' (first at data[0].paragraphs[0].qas[0])")]


def test_missing_id_falls_back_to_the_location(tmp_path: Path) -> None:
    items = _write_squad(tmp_path, _squad({"question": "How long?",
                                           "answers": [{"text": "20 minutes", "answer_start": 14}]}))
    assert _examples(items)[0].id == "qa.json:data[0].paragraphs[0].qas[0]"


def test_unpaired_surrogate_is_skipped(tmp_path: Path) -> None:
    text = ('{"data": [{"paragraphs": [{"context": "pump", '
            '"qas": [{"question": "bad \\ud800", "answers": ["pump"]}]}]}]}')
    items = _read(tmp_path, text)
    assert _skips(items) == [("data[0].paragraphs[0].qas[0]", "'question' holds an unpaired surrogate at character 4")]


# --- whole-file errors ---------------------------------------------------------------------------

def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        _read(tmp_path, '{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}\n')
    assert str(caught.value) == "qa.json: invalid JSON at line 3 column 19: Expecting value"


def test_non_utf8_file_names_the_byte(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        _read(tmp_path, b'{"data": [\n{"title": "caf\xe9"}]}', name="qa.jsonl")
    assert str(caught.value) == "qa.jsonl: not UTF-8: byte 0xe9 at offset 25 (line 2) cannot be decoded"


@pytest.mark.parametrize("content", ["", " \n\n\t"])
def test_empty_file_is_an_error(tmp_path: Path, content: str) -> None:
    with pytest.raises(SourceError, match="qa.json: empty file"):
        _read(tmp_path, content)


def test_file_errors_raise_at_the_call_not_on_iteration(tmp_path: Path) -> None:
    path = tmp_path / "qa.json"
    path.write_text("[1, 2]")
    with pytest.raises(SourceError, match="not SQuAD: expected an object with a 'data' list, got a list"):
        read_dataset(path, "qa.json", "abc123", "auto")


def test_object_without_data_is_not_squad(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="got an object without a 'data' list"):
        _write_squad(tmp_path, {"question": "q", "answers": []})


def test_format_comes_from_the_extension_unless_given(tmp_path: Path) -> None:
    row = json.dumps({"question": "How long?", "context": CONTEXT, "answers": ["20 minutes"]})
    assert len(_examples(_read(tmp_path, row, name="qa.data", fmt="jsonl"))) == 1
    with pytest.raises(SourceError, match=r"cannot tell the dataset format from the extension '\.data'"):
        _read(tmp_path, row, name="qa.data")
    with pytest.raises(SourceError, match="not SQuAD"):
        _read(tmp_path, json.dumps([row]), name="qa.jsonl", fmt="squad")


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    row = json.dumps({"question": "How long?", "context": CONTEXT, "answers": ["20 minutes"]})
    assert len(_examples(_read(tmp_path, b"\xef\xbb\xbf" + row.encode(), name="qa.jsonl"))) == 1


# --- JSONL ---------------------------------------------------------------------------------------

def test_jsonl_bare_string_answers_are_located_at_the_first_occurrence(tmp_path: Path) -> None:
    items = _jsonl(tmp_path, {"id": 17, "question": "Which one?", "context": "the pump, the valve",
                              "answers": ["the", "valve"]})
    assert items == [QAExample("17", "Which one?", "the pump, the valve", (Answer("the", 0), Answer("valve", 14)),
                               "qa.jsonl", "abc123", "line 1")]


def test_jsonl_accepts_span_objects_and_hugging_face_columns(tmp_path: Path) -> None:
    items = _jsonl(tmp_path,
                   {"question": "How long?", "context": CONTEXT,
                    "answers": [{"text": "20 minutes", "answer_start": 14}]},
                   {"question": "What opens?", "context": CONTEXT,
                    "answers": {"text": ["the valve", "valve"], "answer_start": [31, 35]}})
    assert [(e.id, e.answers) for e in _examples(items)] == [
        ("qa.jsonl:1", (Answer("20 minutes", 14),)),
        ("qa.jsonl:2", (Answer("the valve", 31), Answer("valve", 35))),
    ]


def test_jsonl_problems_name_their_physical_line(tmp_path: Path) -> None:
    items = _jsonl(tmp_path,
                   {"question": "How long?", "context": CONTEXT, "answers": ["20 minutes"]},
                   "",
                   '{"question": "x", "context": ',
                   "[1, 2]",
                   {"question": "How long?", "answers": ["20 minutes"]},
                   {"question": "How long?", "context": CONTEXT, "answers": ["an hour"]},
                   {"question": "q", "context": CONTEXT, "answers": {"text": ["pump"], "answer_start": []}},
                   {"question": "q", "context": CONTEXT, "answers": ["pump"], "is_impossible": True})
    assert len(_examples(items)) == 1
    assert _skips(items) == [
        ("line 3", "invalid JSON at column 30: Expecting value"),
        ("line 4", "expected a JSON object, got a list"),
        ("line 5", "missing 'context'"),
        ("line 6", "answers[0]: 'an hour' does not occur in the context"),
        ("line 7", "answers.text and answers.answer_start differ in length (1 vs 0)"),
        ("line 8", UNANSWERABLE),
    ]


def test_jsonl_lines_split_only_at_newlines(tmp_path: Path) -> None:
    context = "first\u2028second line"
    items = _jsonl(tmp_path, {"question": "q?", "context": context, "answers": ["second"]})
    assert [e.answers for e in _examples(items)] == [(Answer("second", 6),)]


def test_jsonl_with_no_parseable_line_is_an_error(tmp_path: Path) -> None:
    pretty = json.dumps(_squad({"question": "q", "answers": []}), indent=2)
    with pytest.raises(SourceError) as caught:
        _read(tmp_path, pretty, name="qa.jsonl")
    assert str(caught.value) == ("qa.jsonl: not JSON Lines: no line parses (line 1: invalid JSON at column 2: "
                                 "Expecting property name enclosed in double quotes); a single JSON document is "
                                 "format: squad")


@settings(max_examples=100, deadline=None)
@given(context=st.text(alphabet="ab .", min_size=1, max_size=40).filter(str.strip), data=st.data())
def test_every_kept_answer_is_an_exact_span_and_unique_texts_always_survive(
        tmp_path_factory: pytest.TempPathFactory, context: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(context) - 1))
    end = data.draw(st.integers(start + 1, len(context)))
    text = context[start:end]
    given_start = data.draw(st.integers(0, len(context) + 3))
    row = {"question": "q?", "context": context, "answers": [{"text": text, "answer_start": given_start}]}
    items = _jsonl(tmp_path_factory.mktemp("qa"), row)
    for example in _examples(items):
        for answer in example.answers:
            assert context[answer.start:answer.start + len(answer.text)] == answer.text
            assert (answer.repaired_from is not None) == (answer.start != given_start)
    unique = context.find(text, context.find(text) + 1) < 0
    if not text.strip():
        assert _skips(items) == [("line 1", "answers[0]: 'text' is empty")]
    elif unique or context.startswith(text, given_start):
        assert [e.answers[0].start for e in _examples(items)] == [
            given_start if context.startswith(text, given_start) else start]
    else:
        assert "occurs more than once" in _skips(items)[0][1]


# --- JSONL multiple choice and fill in the blank -------------------------------------------------

CHOICES = ["an hour", "20 minutes", "a day"]


@pytest.mark.parametrize("answer", [1, "B", "b", " B ", "20 minutes"])
def test_multiple_choice_answer_by_index_letter_or_text_becomes_the_option_text(
        tmp_path: Path, answer: Any) -> None:
    items = _jsonl(tmp_path, {"id": "m1", "question": "How long does the pump run?", "choices": CHOICES,
                              "answer": answer, "context": CONTEXT})
    assert items == [QAExample("m1", "How long does the pump run?", CONTEXT, (Answer("20 minutes", 14),),
                               "qa.jsonl", "abc123", "line 1")]


def test_multiple_choice_options_object_and_closed_book(tmp_path: Path) -> None:
    items = _jsonl(tmp_path,
                   {"question": "What opens?", "options": {"A": "the pump", "B": "the valve"}, "answer": "B"},
                   {"question": "Which step?", "choices": {"1": "fill", "2": "drain"}, "answer": 2, "context": "  "},
                   {"question": "Which step?", "choices": {"x": "fill", "y": "drain"}, "answer": "fill"})
    assert [(e.question, e.context, e.answers) for e in _examples(items)] == [
        ("What opens?", "", (Answer("the valve", None),)),  # no context: closed-book, no span
        ("Which step?", "", (Answer("drain", None),)),  # an integer is a label of an object of choices
        ("Which step?", "", (Answer("fill", None),)),
    ]


def test_multiple_choice_answer_absent_from_the_context_has_no_start(tmp_path: Path) -> None:
    items = _jsonl(tmp_path, {"question": "How long?", "choices": CHOICES, "answer": 0, "context": CONTEXT})
    assert _examples(items)[0].answers == (Answer("an hour", None),)
    assert _examples(items)[0].context == CONTEXT


def test_multiple_choice_question_is_kept_without_its_options(tmp_path: Path) -> None:
    items = _jsonl(tmp_path, {"question": " How long? ", "choices": CHOICES, "answer": "C"})
    assert _examples(items)[0].question == "How long?"


@pytest.mark.parametrize(("row", "reason"), [
    ({"choices": CHOICES, "answer": 1}, "missing 'question'"),
    ({"question": "q?", "choices": CHOICES}, "missing 'answer'"),
    ({"question": "q?", "choices": [], "answer": 0}, "'choices' is empty"),
    ({"question": "q?", "options": {}, "answer": "A"}, "'options' is empty"),
    ({"question": "q?", "choices": "an hour", "answer": 0}, "'choices' must be a list or an object, got a string"),
    ({"question": "q?", "choices": ["a", 7], "answer": 0}, "'choices[1]' must be a string, got a number"),
    ({"question": "q?", "choices": {"A": "a", "B": " "}, "answer": "A"}, "'choices.B' is empty"),
    ({"question": "q?", "choices": CHOICES, "options": CHOICES, "answer": 0}, "both 'choices' and 'options': give one"),
    ({"question": "q?", "choices": CHOICES, "answer": 3}, "'answer' index 3 is out of range for 3 choices (0 to 2)"),
    ({"question": "q?", "choices": CHOICES, "answer": -1}, "'answer' index -1 is out of range for 3 choices (0 to 2)"),
    ({"question": "q?", "choices": CHOICES, "answer": "D"},
     "'answer' letter 'D' is out of range for 3 choices (A to C)"),
    ({"question": "q?", "choices": CHOICES, "answer": "two hours"}, "'answer' 'two hours' is not among the choices"),
    ({"question": "q?", "choices": {"1": "a", "2": "b"}, "answer": 3}, "'answer' '3' is not among the choices"),
    ({"question": "q?", "choices": CHOICES, "answer": ""}, "'answer' is empty"),
    ({"question": "q?", "choices": CHOICES, "answer": True},
     "'answer' must be a choice's index, label or text, got a boolean"),
    ({"question": "q?", "choices": CHOICES, "answer": 1.0},
     "'answer' must be a choice's index, label or text, got a number"),
    ({"question": "q?", "choices": ["B", "C"], "answer": "B"},
     "'answer' 'B' is the label of choice B and the text of choice A: cannot tell which is meant"),
    ({"question": "q?", "choices": CHOICES, "answer": 1, "context": 5}, "'context' must be a string, got a number"),
])
def test_invalid_multiple_choice_items_are_skipped_with_their_reason(
        tmp_path: Path, row: dict[str, Any], reason: str) -> None:
    assert _jsonl(tmp_path, row) == [Skipped(source="qa.jsonl", reason=reason, location="line 1")]


def test_a_letter_that_is_also_its_own_choice_text_is_not_ambiguous(tmp_path: Path) -> None:
    items = _jsonl(tmp_path, {"question": "q?", "choices": ["A", "B"], "answer": "B"})
    assert _examples(items)[0].answers == (Answer("B", None),)


@pytest.mark.parametrize(("field", "sentence"), [
    ("question", "The pump runs ___ before the valve opens."),
    ("text", "The pump runs _____ before the valve opens."),
    ("sentence", "The pump runs [BLANK] before the valve opens."),
    ("question", "The pump runs <blank> before the valve opens."),
    ("question", "The pump runs [blank] before the valve opens."),
])
def test_fill_in_the_blank_becomes_a_question_with_one_blank_form(tmp_path: Path, field: str, sentence: str) -> None:
    items = _jsonl(tmp_path, {field: sentence, "answer": " 20 minutes ", "context": CONTEXT})
    assert items == [QAExample("qa.jsonl:1", "Fill in the blank: The pump runs ___ before the valve opens.", CONTEXT,
                               (Answer("20 minutes", 14),), "qa.jsonl", "abc123", "line 1")]


def test_fill_in_the_blank_closed_book(tmp_path: Path) -> None:
    items = _jsonl(tmp_path, {"id": "f1", "question": "Water boils at ___ degrees Celsius.", "answer": "100"})
    assert items == [QAExample("f1", "Fill in the blank: Water boils at ___ degrees Celsius.", "",
                               (Answer("100", None),), "qa.jsonl", "abc123", "line 1")]


@pytest.mark.parametrize(("row", "reason"), [
    ({"question": "The pump runs 20 minutes.", "answer": "20"},
     "'question' has no blank (___, [BLANK] or <blank>); an item with 'answer' and no 'choices' is fill in the "
     "blank, which needs exactly one"),
    ({"text": "The __ runs ___ and ___.", "answer": "pump"},
     "'text' has 2 blanks (___, [BLANK] or <blank>); an item with 'answer' and no 'choices' is fill in the "
     "blank, which needs exactly one"),
    ({"sentence": "[BLANK] and <blank>", "answer": "pump"},
     "'sentence' has 2 blanks (___, [BLANK] or <blank>); an item with 'answer' and no 'choices' is fill in the "
     "blank, which needs exactly one"),
    ({"answer": "pump"}, "missing 'question' (or 'text' or 'sentence')"),
    ({"question": "The ___ runs.", "answer": None}, "missing 'answer'"),
    ({"question": "The ___ runs.", "answer": "  "}, "'answer' is empty"),
    ({"question": "The ___ runs.", "answer": 20}, "'answer' must be a string, got a number"),
    ({"question": 7, "answer": "pump"}, "'question' must be a string, got a number"),
])
def test_invalid_fill_in_the_blank_items_are_skipped_with_their_reason(
        tmp_path: Path, row: dict[str, Any], reason: str) -> None:
    assert _jsonl(tmp_path, row) == [Skipped(source="qa.jsonl", reason=reason, location="line 1")]


def test_converted_items_share_ids_with_extractive_ones(tmp_path: Path) -> None:
    items = _jsonl(tmp_path,
                   {"id": "x", "question": "How long?", "context": CONTEXT, "answers": ["20 minutes"]},
                   {"id": "x", "question": "How long?", "choices": CHOICES, "answer": 1},
                   {"id": "x", "question": "It runs ___.", "answer": "20 minutes"})
    assert len(_examples(items)) == 1
    assert _skips(items) == [("line 2", "duplicate id 'x' (first at line 1)"),
                             ("line 3", "duplicate id 'x' (first at line 1)")]


def test_extractive_items_still_need_a_context_and_exact_spans(tmp_path: Path) -> None:
    items = _jsonl(tmp_path, {"question": "How long?", "answers": ["20 minutes"]},
                   {"question": "How long?", "context": CONTEXT, "answers": ["20 Minutes"]},
                   {"question": "How long?", "context": CONTEXT, "answers": ["20 minutes"], "answer": "ignored"})
    assert _skips(items) == [("line 1", "missing 'context'"),
                             ("line 2", "answers[0]: '20 Minutes' does not occur in the context")]
    assert _examples(items)[0].answers == (Answer("20 minutes", 14),)
