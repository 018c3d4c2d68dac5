"""Constrained decoding: a reply schema's every instance is what the parser accepts whole, its
longest instance fits the token budget at CHARS_PER_TOKEN, and a random teacher decoding under it
writes schema-valid JSON for every request, whatever its batch."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from distill.runtime.models import align_special_tokens
from distill.runtime.synthesis.closing import INDENT, SHAPE_KEY
from distill.runtime.synthesis.constrain import CHARS_PER_TOKEN, reply_schema, schema_text, strings_schema
from distill.runtime.synthesis.generate import HFGenerator, Request
from distill.runtime.synthesis.parse import Kind, parse_items, parse_strings
from tests.runtime.synthesis.test_generate import tiny_teacher


def longest(schema: dict) -> object:
    """The schema's longest instance: every array at maxItems, every string at maxLength."""
    if "const" in schema:
        return schema["const"]
    if schema["type"] == "string":
        shape = schema.get(SHAPE_KEY, schema)  # a pattern's bounds are noted beside it
        # a non-ASCII letter: counted as one character, as JSON Schema does
        return "é" * (shape["maxLength"] - len(shape.get("endsWith", ""))) + shape.get("endsWith", "")
    if schema["type"] == "array":
        shapes = schema.get("prefixItems") or [schema["items"]] * schema["maxItems"]
        return [longest(shape) for shape in shapes]
    return {key: longest(shape) for key, shape in schema["properties"].items()}


@pytest.mark.parametrize(("kind", "n", "turns", "budget"), [
    ("qa", 3, 1, 512), ("qa", 1, 1, 64), ("qa", 10, 1, 2048), ("conversation", 1, 3, 512), ("conversation", 1, 2, 96)])
def test_the_longest_reply_parses_whole_and_fits_the_budget(kind: Kind, n: int, turns: int, budget: int) -> None:
    schema = reply_schema(kind, n, turns, budget)
    Draft202012Validator.check_schema(schema)
    reply = json.dumps(longest(schema), ensure_ascii=False, indent=INDENT)
    assert Draft202012Validator(schema).is_valid(json.loads(reply))
    assert len(reply) <= CHARS_PER_TOKEN * budget
    parsed = parse_items(reply, kind, turns)
    assert parsed.clean and len(parsed.items) == (n if kind == "qa" else 1)


def test_the_longest_paraphrase_reply_parses_whole_and_fits_the_budget() -> None:
    schema = strings_schema(3, 128)
    reply = json.dumps(longest(schema), ensure_ascii=False, indent=INDENT)
    assert len(reply) <= CHARS_PER_TOKEN * 128
    parsed = parse_strings(reply, 3)
    assert parsed.clean and len(parsed.items) == 3


def test_a_qa_schema_asks_for_exactly_n_items_with_real_questions() -> None:
    schema = reply_schema("qa", 2, 1, 512)
    validator = Draft202012Validator(schema)
    item = {"question": "What runs?", "answer": "The pump.", "evidence": "The pump runs."}
    assert validator.is_valid([item, item])
    assert not validator.is_valid([item])  # fewer than asked
    assert not validator.is_valid([item, item, item])
    assert not validator.is_valid([{**item, "question": "Why?"}, item])  # shorter than a question
    assert not validator.is_valid([{**item, "question": "What runs? The pump"}, item])  # runs past its "?"
    assert not validator.is_valid([{**item, "question": 'What does "f" mean?'}, item])  # quotes close strings
    assert not validator.is_valid([{k: v for k, v in item.items() if k != "evidence"}, item])


def requests(schema: str) -> list[Request]:
    prompts = ["Pump?", "Write two questions about the filter and the water, please.", "Watts of P3 and P4?"]
    return [Request(f"chunk{i}:qa:0", ({"role": "user", "content": p},), schema) for i, p in enumerate(prompts)]


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_a_random_teacher_writes_schema_valid_replies_within_its_budget(temperature: float) -> None:
    # A random teacher fills every string to its maxLength with 1-2 character tokens: ~720
    # characters of JSON against 240 tokens (the shortest reply alone takes 142 of this test
    # tokenizer's tokens: it has no token for a run of spaces). The budget closer makes each reply
    # end in time.
    schema = reply_schema("qa", 2, 1, 240)
    model, tokenizer = tiny_teacher()
    align_special_tokens(model, tokenizer)  # as the stage does for a random teacher: EOS is EOS
    generator = HFGenerator(model, tokenizer, max_new_tokens=240, temperature=temperature, seed=2)
    together = generator.generate(requests(schema_text(schema)))
    alone = [generator.generate([request])[0] for request in requests(schema_text(schema))]
    assert together == alone
    validator = Draft202012Validator(schema)
    for reply in together:
        # strict=False: xgrammar's string rule admits raw control characters, as the stage's own
        # decoder does (teachers write raw newlines in answers).
        assert validator.is_valid(json.loads(reply, strict=False)), reply
        assert len(tokenizer(reply, add_special_tokens=False)["input_ids"]) <= 240
    assert any('x"\n  }\n]' in reply or '"x' in reply for reply in together)  # some were closed by force
    free = HFGenerator(model, tokenizer, max_new_tokens=240, temperature=temperature, seed=2)
    unconstrained = free.generate([Request(r.key, r.messages) for r in requests(schema_text(schema))])
    assert not any(reply.startswith("[\n  {") for reply in unconstrained)  # the constraint did the work


def test_a_batch_mixing_constrained_and_free_requests_is_refused() -> None:
    model, tokenizer = tiny_teacher()
    generator = HFGenerator(model, tokenizer, max_new_tokens=8, temperature=0.0, seed=0)
    mixed = requests(schema_text(reply_schema("qa", 1, 1, 64)))
    with pytest.raises(ValueError, match="mixes requests"):
        generator.generate([mixed[0], Request("free", mixed[1].messages)])
