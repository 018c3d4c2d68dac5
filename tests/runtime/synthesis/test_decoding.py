"""data.synthesis.decoding reaches the teacher: under "constrained" (the default) every task,
repair and paraphrase request carries its reply schema, sized by max_new_tokens; under "free"
none does, and prose replies are read and counted."""

from __future__ import annotations

import json
import re
from pathlib import Path

from distill.runtime.synthesis.constrain import reply_schema, schema_text, strings_schema
from distill.runtime.synthesis.generate import Request
from distill.runtime.synthesis.stage import PARAPHRASE_MAX_NEW_TOKENS, synthesize
from tests.runtime.synthesis.scripted import Scripted, chunks, spec


def test_constrained_requests_carry_their_reply_schema(tmp_path: Path) -> None:
    teacher = Scripted()
    sampled = {"kind": "qa", "pairs_per_chunk": 2, "max_repairs": 2, "min_support": 0.5, "temperature": 0.7}
    synthesize(spec(synthesis=sampled), chunks(), [], teacher, 2, tmp_path, "scripted")
    paraphrase = schema_text(strings_schema(1, 512))
    assert {key.split(":")[1] for key in teacher.schemas} == {"qa", "paraphrase"}
    repairs = [key for key in teacher.schemas if key.endswith(":qa:1") or key.endswith(":qa:2")]
    assert repairs  # the scripted corpus has replies that need a repair prompt or a top-up
    asked = set()
    for key, schema in teacher.schemas.items():
        if key.endswith(":paraphrase"):
            assert schema == paraphrase, key
            continue
        # a task, a top-up or a repair (whose first message is its task): as many items as asked
        count = int(re.search(r"write (\d+) question-answer", teacher.messages[key][0]["content"]).group(1))
        assert schema == schema_text(reply_schema("qa", count, 3, 512)), key
        asked.add(count)
    assert asked == {1, 2}  # sampled, a chunk one grounded pair short gets a top-up for one
    card = json.loads((tmp_path / "data_card.json").read_text())
    assert card["generation"]["decoding"] == "constrained"
    assert "decoding constrained" in (tmp_path / "DATA_CARD.md").read_text()


def test_paraphrase_schemas_follow_max_new_tokens(tmp_path: Path) -> None:
    teacher = Scripted()
    synthesize(spec(synthesis={"kind": "qa", "pairs_per_chunk": 2, "max_new_tokens": 1024}), chunks(), [], teacher,
               2, tmp_path, "scripted")
    paraphrases = {schema for key, schema in teacher.schemas.items() if key.endswith(":paraphrase")}
    assert paraphrases == {schema_text(strings_schema(1, 1024))} != {
        schema_text(strings_schema(1, PARAPHRASE_MAX_NEW_TOKENS))}


class Prose(Scripted):
    """Writes every chunk's pairs as "Question: ... Answer: ..." prose."""

    def _reply(self, request: Request) -> str:
        reply = super()._reply(request)
        if request.key.endswith(":paraphrase"):
            return reply
        try:
            items = json.loads(reply.removesuffix(",]") + ("]" if reply.endswith(",]") else ""))
        except json.JSONDecodeError:
            return reply
        return "\n\n".join(f"Question: {i.get('question', '')}\nAnswer: {i.get('answer', '')}" for i in items)


def test_free_requests_carry_no_schema_and_prose_is_read(tmp_path: Path) -> None:
    teacher = Prose()
    free = {"kind": "qa", "pairs_per_chunk": 2, "max_repairs": 2, "min_support": 0.5, "decoding": "free"}
    synthesize(spec(synthesis=free), chunks(), [], teacher, 2, tmp_path, "scripted")
    assert teacher.schemas and not any(teacher.schemas.values())
    card = json.loads((tmp_path / "data_card.json").read_text())
    assert card["generation"]["decoding"] == "free"
    assert card["generation"]["prose_replies"] >= 3  # pump, valve and battery are prose at once
    train = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert "The pump runs for 20 minutes." in {e["answer"] for e in train} | {
        json.loads(line)["answer"] for name in ("val.jsonl", "test.jsonl")
        for line in (tmp_path / name).read_text().splitlines()}
