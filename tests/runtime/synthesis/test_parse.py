"""Teacher responses -> valid items and reasoned rejections: every failure mode seen in practice,
garbage that must never raise, and round trips of valid items wrapped in prose."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from distill.runtime.synthesis.parse import Kind, Parsed, Rejected, item_schema, parse_items, parse_strings

QA = [{"question": "What is distillation?", "answer": "Training a student on a teacher's outputs."},
      {"question": "Who teaches?", "answer": "The large model.", "evidence": "the large model teaches"}]
CONVERSATION = {"messages": [{"role": "user", "content": "What is a pump?"},
                             {"role": "assistant", "content": "A device that moves fluid."},
                             {"role": "user", "content": "How is it cleaned?"},
                             {"role": "assistant", "content": "Rinse the filter weekly."}]}


def test_clean_array() -> None:
    parsed = parse_items(json.dumps(QA), "qa", 1)
    assert parsed == Parsed(items=tuple(QA), rejected=(), error=None, salvaged=False)
    assert parsed.clean and parsed.problems == []


@pytest.mark.parametrize("key", ["pairs", "qa", "questions", "items", "data", "whatever_the_teacher_chose"])
def test_object_wrapper_under_any_single_key(key: str) -> None:
    parsed = parse_items(json.dumps({"topic": "pumps", key: QA}), "qa", 1)
    assert parsed.items == tuple(QA) and parsed.clean


def test_several_lists_need_a_known_name() -> None:
    text = json.dumps({"pairs": QA, "rejected_drafts": [{"question": "x", "answer": "y"}]})
    assert parse_items(text, "qa", 1).items == tuple(QA)
    ambiguous = parse_items(json.dumps({"a": QA, "b": QA}), "qa", 1)
    assert ambiguous.items == () and ambiguous.error is not None and ambiguous.error.startswith("no items in the JSON")


def test_single_item_and_strings_are_stripped_and_unknown_keys_dropped() -> None:
    text = '{"question": "  Why?\\n", "answer": " Because. ", "difficulty": "easy", "evidence": ""}'
    assert parse_items(text, "qa", 1).items == ({"question": "Why?", "answer": "Because."},)


def test_json_lines_of_items() -> None:
    text = "\n".join(json.dumps(item) for item in QA)
    assert parse_items(text, "qa", 1) == Parsed(tuple(QA), (), None, False)


def test_prose_and_fenced_json() -> None:
    text = f"Sure! Here are [2] pairs about {{pumps}}:\n\n```json\n{json.dumps(QA, indent=2)}\n```\nHope this helps."
    parsed = parse_items(text, "qa", 1)
    assert parsed.items == tuple(QA) and parsed.clean


def test_two_fences_take_the_first() -> None:
    second = [{"question": "Other?", "answer": "Other."}]
    text = f"```json\n{json.dumps(QA)}\n```\nOr, shorter:\n```\n{json.dumps(second)}\n```"
    assert parse_items(text, "qa", 1).items == tuple(QA)


def test_a_broken_first_fence_is_reported_when_a_later_one_is_used() -> None:
    text = '```json\n[{"question": "a" "answer": "b"}]\n```\nFixed:\n```json\n' + json.dumps(QA) + "\n```"
    parsed = parse_items(text, "qa", 1)
    assert parsed.items == tuple(QA) and parsed.salvaged and not parsed.clean
    at = text.index('"answer"')
    assert parsed.rejected == (Rejected(f"JSON syntax error at char {at}: Expecting ',' delimiter "
                                        "(skipped for later JSON)"),)


def test_truncated_array_salvages_complete_items() -> None:
    text = "```json\n" + json.dumps(QA + [{"question": "Third?", "answer": "Cut"}])[:-12]  # max_new_tokens hit
    parsed = parse_items(text, "qa", 1)
    assert parsed.items == tuple(QA) and parsed.salvaged and not parsed.clean
    assert parsed.rejected == (Rejected("response cut off after item 2"),)
    assert parsed.problems == ["response cut off after item 2"]


def test_truncated_wrapper_salvages_complete_items() -> None:
    text = json.dumps({"pairs": QA})[:-30]
    parsed = parse_items(text, "qa", 1)
    assert parsed.items == (QA[0],) and parsed.rejected == (Rejected("response cut off after item 1"),)


def test_syntax_error_mid_array_keeps_items_before_it() -> None:
    text = json.dumps(QA)[:-1] + ', {"question": "Q3" "answer": "A3"}, {"question": "Q4", "answer": "A4"}]'
    parsed = parse_items(text, "qa", 1)
    at = text.index('"answer": "A3"')
    assert parsed.items == tuple(QA) and parsed.salvaged
    assert parsed.rejected == (Rejected(f"JSON syntax error at char {at} after item 2: Expecting ',' delimiter"),)


def test_cut_off_before_any_item_is_an_error() -> None:
    parsed = parse_items('[{"question": "What', "qa", 1)
    assert parsed == Parsed((), (), "response cut off before the first complete item", False)


@pytest.mark.parametrize("text", [
    '[{"question": "Q", "answer": "A",}, {"question": "Q2", "answer": "A2"},\n]',  # trailing commas
    "[{'question': 'Q', 'answer': 'A'}, {'question': 'Q2', 'answer': 'A2'}]",  # Python-style quotes
])
def test_repairs_give_a_clean_result(text: str) -> None:
    parsed = parse_items(text, "qa", 1)
    assert parsed.items == ({"question": "Q", "answer": "A"}, {"question": "Q2", "answer": "A2"}) and parsed.clean


def test_python_quotes_keep_apostrophes_and_double_quotes() -> None:
    text = """[{'question': 'What is "it"?', 'answer': 'It\\'s a pump.'}]"""
    assert parse_items(text, "qa", 1).items == ({"question": 'What is "it"?', "answer": "It's a pump."},)


def test_raw_newlines_inside_strings_are_accepted() -> None:
    assert parse_items('[{"question": "Q", "answer": "line 1\nline 2"}]', "qa", 1).items == (
        {"question": "Q", "answer": "line 1\nline 2"},)


def test_invalid_items_are_rejected_with_index_and_field() -> None:
    items = [QA[0], {"question": "No answer?"}, {"question": "   ", "answer": "A"}, {"question": 7, "answer": "A"},
             "just a string", {"question": "Q", "answer": "x" * 4001}]
    parsed = parse_items(json.dumps(items), "qa", 1)
    assert parsed.items == (QA[0],) and not parsed.clean and not parsed.salvaged
    assert [r.reason for r in parsed.rejected] == [
        "item 2: 'answer' is a required property",
        "item 3: question: must not be empty",
        "item 4: question: must be a string (got number)",
        "item 5: must be an object (got string)",
        "item 6: answer: is 4001 characters long, at most 4000",
    ]
    assert [r.item for r in parsed.rejected] == items[1:]


def test_valid_conversation_and_bare_message_list() -> None:
    assert parse_items(json.dumps([CONVERSATION]), "conversation", 2).items == (CONVERSATION,)
    assert parse_items(json.dumps(CONVERSATION["messages"]), "conversation", 2).items == (CONVERSATION,)


@pytest.mark.parametrize(("messages", "reason"), [
    ([("assistant", "Hi"), ("user", "Hello")],
     "item 1: messages[0].role: must be 'user' (got 'assistant'); messages[1].role: must be 'assistant' (got 'user')"),
    ([("user", "Hi"), ("user", "Hello")], "item 1: messages[1].role: must be 'assistant' (got 'user')"),
    ([("user", "Hi"), ("assistant", "Hello"), ("user", "And?")],
     "item 1: messages: ends with a user message; a conversation ends with the assistant's reply"),
    ([("user", "Hi")], "item 1: messages: must hold at least 2 entries (got 1)"),
    ([("system", "Be nice"), ("assistant", "")],
     "item 1: messages[0].role: must be 'user' (got 'system'); messages[1].content: must not be empty"),
])
def test_bad_conversations_are_rejected(messages: list[tuple[str, str]], reason: str) -> None:
    item = {"messages": [{"role": role, "content": content} for role, content in messages]}
    parsed = parse_items(json.dumps({"conversations": [CONVERSATION, item]}), "conversation", 2)
    assert parsed.items == (CONVERSATION,)
    assert parsed.rejected == (Rejected(reason.replace("item 1", "item 2"), item),)


def test_too_many_turns_keeps_the_first_exchanges() -> None:
    parsed = parse_items(json.dumps(CONVERSATION), "conversation", 1)
    assert parsed.items == ({"messages": CONVERSATION["messages"][:2]},) and parsed.clean


def test_qa_given_where_conversations_are_asked_for() -> None:
    parsed = parse_items(json.dumps(QA[:1]), "conversation", 2)
    assert parsed.rejected == (Rejected("item 1: 'messages' is a required property", QA[0]),)


@pytest.mark.parametrize(("text", "error"), [
    ("", "response is empty"),
    ("  \n\t", "response is empty"),
    ("I cannot help with that.", "no JSON found"),
    ("see [1] and [2]", "no items in the JSON at char 4: expected a list of objects with 'question' and 'answer'"),
    ('{"answer_to": "everything"}', "no items in the JSON at char 0: expected a list of objects with 'question' "
                                    "and 'answer'"),
    ('[{"question" "Q"}]', "JSON syntax error at char 13: Expecting ':' delimiter"),
])
def test_whole_response_errors(text: str, error: str) -> None:
    assert parse_items(text, "qa", 1) == Parsed((), (), error, False)


def test_unpaired_surrogate_is_rejected() -> None:
    parsed = parse_items('[{"question": "Q\\ud800", "answer": "A"}]', "qa", 1)
    assert [r.reason for r in parsed.rejected] == ["item 1: question: contains an unpaired surrogate"]


def test_garbage_never_raises() -> None:
    rng = random.Random(0)
    for _ in range(300):
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(400))).decode("utf-8", "replace")
        assert isinstance(parse_items(raw, "qa", 2), Parsed)
        chars = "".join(rng.choice("[]{}\"',:\\ \nabc1") for _ in range(rng.randrange(400)))
        assert isinstance(parse_items(chars, "conversation", 2), Parsed)
    for text in ["[" * 100_000, "{" * 50_000 + "}" * 50_000, '["' * 20_000, "1" * 10_000, "[" + "9" * 5000 + "]"]:
        assert parse_items(text, "qa", 1).items == ()
    not_text = parse_items(None, "qa", 1)  # type: ignore[arg-type]  # a reply that is not text, on purpose
    assert not_text.error == "response is not text (got NoneType)"


def test_bad_arguments_are_the_callers_bug() -> None:
    with pytest.raises(ValueError, match="turns >= 1"):
        parse_items("[]", "conversation", 0)
    with pytest.raises(ValueError, match="kind"):
        parse_items("[]", "poem", 1)  # type: ignore[arg-type]  # an unknown kind, on purpose
    with pytest.raises(ValueError, match="expected"):
        parse_strings("[]", 0)


def test_parse_strings() -> None:
    assert parse_strings('Here:\n```json\n[" One ", "Two"]\n```', 2) == Parsed(
        ({"text": "One"}, {"text": "Two"}), (), None, False)
    assert parse_strings('{"paraphrases": ["One"]}', 3).items == ({"text": "One"},)
    parsed = parse_strings('["One", 2, "", "Two", "Three"]', 2)
    assert parsed.items == ({"text": "One"}, {"text": "Two"})
    assert parsed.rejected == (Rejected("item 2: must be a string (got number)", 2),
                               Rejected("item 3: must not be empty", ""),
                               Rejected("item 5: more than the 2 strings asked for", "Three"))
    assert parse_strings('["One", "Tw', 2).rejected == (Rejected("response cut off after item 1"),)
    assert parse_strings("[1, 2]", 2).error == "no items in the JSON at char 0: expected a list of strings"


def test_item_schema_shapes() -> None:
    qa = item_schema("qa", 1)
    assert qa["required"] == ["question", "answer"]
    assert qa["properties"]["question"]["maxLength"] == 1000 and qa["properties"]["answer"]["maxLength"] == 4000
    conversation = item_schema("conversation", 3)["properties"]["messages"]
    assert conversation["maxItems"] == 6 and [m["properties"]["role"]["const"] for m in
                                              conversation["prefixItems"]] == ["user", "assistant"] * 3
    Draft202012Validator.check_schema(qa)
    Draft202012Validator.check_schema(item_schema("conversation", 3))


_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60).filter(lambda s: s.strip() == s and s)
_QA_ITEM = st.builds(lambda q, a: {"question": q, "answer": a}, _TEXT, _TEXT)
_CONV_ITEM = st.lists(st.tuples(_TEXT, _TEXT), min_size=1, max_size=3).map(lambda pairs: {"messages": [
    {"role": role, "content": content}
    for pair in pairs for role, content in zip(("user", "assistant"), pair, strict=True)]})
# Prose that cannot open a JSON container of its own.
_PROSE = st.text(st.characters(codec="utf-8", exclude_characters="[]{}`"), max_size=80)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300) | st.text(st.sampled_from("[]{}\"',:\\ \n`qa1"), max_size=300),
       kind=st.sampled_from(["qa", "conversation"]), turns=st.integers(1, 3))
def test_arbitrary_text_never_raises_and_items_match_the_schema(text: str, kind: Kind, turns: int) -> None:
    parsed = parse_items(text, kind, turns)
    validator = Draft202012Validator(item_schema(kind, turns))
    assert all(validator.is_valid(item) for item in parsed.items)
    assert (parsed.error is None) or (not parsed.items and not parsed.rejected)
    assert all("\n" not in problem for problem in parsed.problems)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), kind=st.sampled_from(["qa", "conversation"]), before=_PROSE, after=_PROSE,
       fenced=st.booleans(), indent=st.sampled_from([None, 2]))
def test_valid_items_in_prose_round_trip(data: st.DataObject, kind: Kind, before: str, after: str, fenced: bool,
                                         indent: int | None) -> None:
    items = data.draw(st.lists(_QA_ITEM if kind == "qa" else _CONV_ITEM, min_size=1, max_size=4))
    body = json.dumps(items, indent=indent, ensure_ascii=data.draw(st.booleans()))
    text = f"{before}\n```json\n{body}\n```\n{after}" if fenced else f"{before} {body} {after}"
    parsed = parse_items(text, kind, 3)
    assert parsed == Parsed(tuple(items), (), None, False)


@settings(max_examples=100, deadline=None)
@given(strings=st.lists(_TEXT, min_size=1, max_size=5), before=_PROSE, after=_PROSE)
def test_strings_round_trip(strings: list[str], before: str, after: str) -> None:
    parsed = parse_strings(f"{before}{json.dumps(strings)}{after}", len(strings))
    assert parsed.items == tuple({"text": s} for s in strings) and parsed.clean
