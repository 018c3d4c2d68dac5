"""A scripted teacher for the synthesize stage: a test double for the model only. Parsing,
validation, grounding, dedup, augmentation and split are the real code.

Run as a module it synthesizes the scripted corpus into a folder, slowly, logging every request
key: the kill -9 test kills it mid-run and resumes.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill.compiler.codec import build_spec
from distill.compiler.spec import Spec
from distill.runtime.sources.records import Chunk, chunk_id
from distill.runtime.synthesis.generate import Request

# Each document is one chunk here; what the teacher "replies" per attempt is scripted below.
DOCUMENTS = {
    "pump.md": "The pump runs for 20 minutes before it stops. It draws 40 watts while running.",
    "filter.md": "Clean the filter every month with warm water. Never use soap on the filter.",
    "display.md": "The display shows error E4 when the tank is empty. Refill the tank to clear it.",
    "noise.md": "Random words only, nothing a question could be asked about.",
    "valve.md": "Open the valve slowly: a quarter turn every five seconds keeps pressure steady.",
    "battery.md": "The battery lasts eight hours. Charge it with the supplied 12 volt adapter.",
}
QA = {
    # valid at once
    "pump.md": ['[{"question": "How long does the pump run?", "answer": "The pump runs for 20 minutes."},'
                ' {"question": "How much power does the pump draw?", "answer": "It draws 40 watts while running."}]'],
    # malformed (cut off mid-item), then repaired on the first repair prompt
    "filter.md": ['Sure, here are the pairs: [{"question": "How often is the filter cleaned?", "ans',
                  '```json\n[{"question": "How often should the filter be cleaned?", '
                  '"answer": "Every month, with warm water."}]\n```'],
    # partially valid on every attempt: one good, one ungrounded, one missing its question
    "display.md": ['[{"question": "What does error E4 mean?", "answer": "The tank is empty."},'
                   ' {"question": "Who made the display?", "answer": "Acme Corporation in Berlin."},'
                   ' {"answer": "refill"}]'],
    # garbage on every attempt
    "noise.md": ["I cannot help with that."],
    # valid, but the second question repeats the first (after normalization)
    "valve.md": ['[{"question": "How fast should the valve be opened?", '
                 '"answer": "Slowly, a quarter turn every five seconds."},'
                 ' {"question": "how FAST should the valve be opened??", "answer": "Slowly: a quarter turn every five '
                 'seconds keeps pressure steady."}]'],
    # trailing comma, which the parser repairs
    "battery.md": ['[{"question": "How long does the battery last?", "answer": "The battery lasts eight hours."},]'],
}


def chunks() -> list[Chunk]:
    made = []
    for source, text in DOCUMENTS.items():
        sha = f"sha-{source}"
        made.append(Chunk(chunk_id(sha, 1, 1, 0, len(text), text), text, source, sha, 1, 1, 0, len(text),
                          len(text.split())))
    return made


def spec(**data: Any) -> Spec:
    """A Spec for the scripted corpus; keyword arguments replace ``data`` sections."""
    # Greedy: each document has one sentence worth a question (focus.py), which its first request
    # names, so no top-up is sent and every request is scripted below (test_top_up has top-ups).
    sections = {"synthesis": {"kind": "qa", "pairs_per_chunk": 2, "max_repairs": 2, "min_support": 0.5,
                              "temperature": 0},
                "augmentation": {"paraphrases": 1, "typo_rate": 0.05},
                "split": {"val": 0.2, "test": 0.2, "by": "document"}}
    sections.update(data)
    return build_spec({"version": 1, "name": "scripted", "seed": 3, "sources": [{"text": "*.md"}],
                       "student": {"model": "org/student"}, "teacher": {"model": "org/teacher"}, "data": sections})


class Scripted:
    """Replies from the script by chunk and attempt (the last scripted reply repeats); paraphrases
    echo the question reworded. ``calls`` lists every request key in order."""

    def __init__(self, delay: float = 0.0, log: Path | None = None) -> None:
        self.by_id = {chunk.id: chunk.source for chunk in chunks()}
        self.calls: list[str] = []
        self.schemas: dict[str, str | None] = {}  # request key -> the reply schema it carried
        self.messages: dict[str, tuple[dict[str, str], ...]] = {}  # request key -> its messages
        self.delay, self.log = delay, log

    def generate(self, requests: Sequence[Request]) -> list[str]:
        time.sleep(self.delay)
        replies = [self._reply(request) for request in requests]
        self.calls += [request.key for request in requests]
        self.schemas.update((request.key, request.schema) for request in requests)
        self.messages.update((request.key, request.messages) for request in requests)
        if self.log is not None:
            with self.log.open("a") as handle:
                handle.writelines(request.key + "\n" for request in requests)
        return replies

    def _reply(self, request: Request) -> str:
        key, what = request.key.split(":")[0], request.key.split(":")[1]
        if what == "paraphrase":
            question = json.loads(request.messages[-1]["content"].split("Question: ", 1)[1])
            return json.dumps([f"In other words: {question}"])
        script = QA[self.by_id[key]]
        return script[min(int(request.key.split(":")[2]), len(script) - 1)]


if __name__ == "__main__":  # python -m tests.runtime.synthesis.scripted OUT LOG DELAY
    from distill.runtime.synthesis.stage import synthesize

    out, log, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    synthesize(spec(), chunks(), [], Scripted(delay, log), 1, out, "scripted")
