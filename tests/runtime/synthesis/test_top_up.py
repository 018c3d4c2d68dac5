"""Top-ups: a chunk with fewer grounded pairs than asked gets requests for the missing ones,
naming sentences not asked about yet; greedy, with none left, it gets none; the counts are in the
card and a resumed run reads the journal back into the same examples."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from distill.compiler.records.data_card import DataCard
from distill.runtime.sources.records import Chunk, chunk_id
from distill.runtime.synthesis.examples import asks
from distill.runtime.synthesis.generate import Request
from distill.runtime.synthesis.parse import parse_items
from distill.runtime.synthesis.stage import synthesize
from tests.runtime.synthesis.scripted import spec

MANUAL = ("The pump runs for twenty minutes before it stops on its own. The filter is cleaned every month with "
          "warm water and a soft brush. The display shows error E4 whenever the water tank is empty. The battery "
          "lasts eight hours and charges from the supplied twelve volt adapter.")


def manual() -> list[Chunk]:
    return [Chunk(chunk_id("sha", 1, 1, 0, len(MANUAL), MANUAL), MANUAL, "manual.md", "sha", 1, 1, 0, len(MANUAL),
                  len(MANUAL.split()))]


class Focused:
    """A teacher that asks about each sentence its prompt names, answering with that sentence;
    on a first request it makes its second answer up. Records every request."""

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def generate(self, requests: Sequence[Request]) -> list[str]:
        self.requests += requests
        return [self._reply(request) for request in requests]

    @staticmethod
    def _reply(request: Request) -> str:
        task = request.messages[0]["content"]
        named = [json.loads(quoted) for quoted in re.findall(r'^\d+\. (".*")$', task, re.M)]
        asked = re.search(r"write (\d+) question-answer", task)
        assert asked is not None, task
        count = int(asked.group(1))
        items = [{"question": f"What does the manual say about {' '.join(s.split()[1:3])}?", "answer": s,
                  "evidence": s} for s in named]
        items += [{"question": f"What else is there to know {index}?", "answer": "It was made in Berlin by Acme.",
                   "evidence": "-"} for index in range(count - len(items))]
        if request.key.endswith(":qa:0"):
            items[-1] = {"question": "Who made the pump?", "answer": "Acme Corporation in Berlin.", "evidence": "-"}
        return json.dumps(items[:count])


def run(tmp_path: Path, teacher: Focused, **synthesis: object) -> DataCard:
    settings = {"kind": "qa", "pairs_per_chunk": 2, "max_repairs": 2, "min_support": 0.5, "temperature": 0,
                "min_yield": 0, **synthesis}
    return synthesize(spec(synthesis=settings, augmentation={"paraphrases": 0}, split={"val": 0, "test": 0}),
                      manual(), [], teacher, 4, tmp_path, "focused")


def test_a_chunk_short_of_grounded_pairs_is_topped_up_about_new_sentences(tmp_path: Path) -> None:
    teacher = Focused()
    card = run(tmp_path, teacher)
    first, top_up = (request.messages[0]["content"] for request in teacher.requests)
    assert [request.key.rsplit(":", 1)[1] for request in teacher.requests] == ["0", "1"]
    assert "write 2 question-answer pairs" in first and "write 1 question-answer pairs" in top_up
    named = [set(re.findall(r'^\d+\. "(.*)"$', text, re.M)) for text in (first, top_up)]
    assert len(named[0]) == 2 and len(named[1]) == 1 and not named[0] & named[1]
    generation = card.generation
    assert (generation.requests, generation.top_ups, generation.repairs) == (2, 1, 0)
    assert generation.teacher_yield.accepted == 2
    answers = {json.loads(line)["answer"] for line in (tmp_path / "train.jsonl").read_text().splitlines()}
    assert answers == named[0] - {sorted(named[0], key=MANUAL.index)[-1]} | named[1]
    assert "1 top-ups for missing pairs" in (tmp_path / "DATA_CARD.md").read_text()


def test_greedy_with_no_sentence_left_sends_no_top_up_and_sampling_does(tmp_path: Path) -> None:
    greedy = Focused()
    card = run(tmp_path / "greedy", greedy, pairs_per_chunk=4)  # all four sentences named at once
    assert len(greedy.requests) == 1 and card.generation.top_ups == 0
    sampled = Focused()
    card = run(tmp_path / "sampled", sampled, pairs_per_chunk=4, temperature=0.7)
    assert len(sampled.requests) == 3 and card.generation.top_ups == 2  # each seeded apart by its key
    assert all("Ask one question" not in request.messages[0]["content"] for request in sampled.requests[1:])


def test_a_resumed_run_reads_the_journal_back_into_the_same_examples(tmp_path: Path) -> None:
    run(tmp_path, Focused())
    again = Focused()
    card = run(tmp_path, again)
    assert again.requests == [] and card.generation.resumed_chunks == 1
    assert card.generation.teacher_yield.accepted == 2


def test_asks_group_repairs_with_their_ask_and_start_a_new_one_after_a_clean_reply() -> None:
    clean, broken = '[{"question": "Why?", "answer": "So."}]', "Sure, here: [{"
    attempts = [parse_items(reply, "qa", 1) for reply in (broken, clean, clean, broken, broken)]
    assert asks(attempts) == [[0, 1], [2], [3, 4]]
