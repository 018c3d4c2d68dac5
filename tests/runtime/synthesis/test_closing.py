"""The shortest valid ending of a constrained reply: every prefix of a valid reply, completed by
``ending``, is a whole schema-valid reply the parser reads clean; text off the shape gets none."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from distill.runtime.synthesis.closing import ending, pieces
from distill.runtime.synthesis.constrain import reply_schema, strings_schema
from distill.runtime.synthesis.parse import parse_items, parse_strings

# Replies as a teacher writes them under the grammar (json.dumps(indent=2)), escapes included: an
# escaped quote, a \u escape, a \n. A question holds no quote, backslash or inner "?".
QA = json.dumps([{"question": "What does idl mean?", "answer": 'Interface "\u00e9" language\n',
                  "evidence": "IDL stands"},
                 {"question": "Which tool reads it?", "answer": "camlidl", "evidence": "Camlidl generates"}],
                indent=2).replace("\u00e9", "\\u00e9")
CONVERSATION = json.dumps({"messages": [{"role": "user", "content": "What is IDL?"},
                                        {"role": "assistant", "content": "A language."},
                                        {"role": "user", "content": "Who wrote it?"},
                                        {"role": "assistant", "content": "Leroy."}]}, indent=2)
STRINGS = json.dumps(["How is it said?", 'What is it "called"?'], indent=2)


@pytest.mark.parametrize(("schema", "document", "parse"), [
    (reply_schema("qa", 2, 1, 512), QA, lambda text: parse_items(text, "qa", 1)),
    (reply_schema("conversation", 1, 2, 512), CONVERSATION, lambda text: parse_items(text, "conversation", 2)),
    (strings_schema(2, 128), STRINGS, lambda text: parse_strings(text, 2)),
])
def test_every_prefix_ends_as_a_valid_reply(schema: dict[str, Any], document: str,
                                            parse: Callable[[str], Any]) -> None:
    validator = Draft202012Validator(schema)
    shape = pieces(schema)
    assert validator.is_valid(json.loads(document))
    for cut in range(len(document) + 1):
        prefix = document[:cut]
        rest = ending(shape, prefix)
        assert rest is not None, prefix
        whole = json.loads(prefix + rest)
        assert validator.is_valid(whole), prefix + rest
        assert parse(prefix + rest).clean, prefix + rest
    assert ending(shape, document) == ""


def test_an_empty_reply_ends_as_the_shortest_document() -> None:
    shape = pieces(reply_schema("qa", 2, 1, 512))
    shortest = [{"question": "xxxxxxx?", "answer": "x", "evidence": "x"}] * 2
    assert ending(shape, "") == json.dumps(shortest, indent=2)
    opened = '[\n  {\n    "question": "Why'
    assert opened + ending(shape, opened) == json.dumps([{**shortest[0], "question": "Whyxxxx?"}, shortest[1]],
                                                        indent=2)
    asked = '[\n  {\n    "question": "Why is it so?'
    assert asked + ending(shape, asked) == json.dumps([{**shortest[0], "question": "Why is it so?"}, shortest[1]],
                                                      indent=2)


@pytest.mark.parametrize("text", ['{"question"', '[{"answer": "x"', '[\n  {\n    "answer"', '[{"question":"What is?"}]',
                                  'Question: why?'])
def test_text_off_the_shape_has_no_ending(text: str) -> None:
    assert ending(pieces(reply_schema("qa", 2, 1, 512)), text) is None


def test_a_schema_of_varying_length_is_refused() -> None:
    with pytest.raises(ValueError, match="one-shape"):
        pieces({"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string"}})
