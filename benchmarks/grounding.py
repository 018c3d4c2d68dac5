"""Grounding precision and recall on real teacher pairs labelled by hand, old rule against new.

    .venv/bin/python benchmarks/grounding.py [--min-support 0.5] [--show 40]

The pairs are SmolLM2-135M-Instruct's, written with the synthesis stage's own prompt over chunks
of two real manuals and labelled good or bad by reading the chunk
(tests/fixtures/grounding/README.md says how they were made). Both rules run here, in one process,
over the same pairs:

- old: the rule before issue 19 (reimplemented below): the share of the answer's distinct
  non-stopword words found among the chunk's words, exact words, identifiers counted like any
  word, and no look at the question; accepted when >= min_support.
- new: ``judge_question`` on the question, then ``judge_answer`` on the answer (an ordinary content
  word, identifiers copied from the chunk left out of the count, light inflections), as the stage
  runs them for a generative student.

Printed: pairs, labelled good, accepted, precision (good among accepted), recall (accepted among
good), bad rejected (rejected among bad), rejections per reason (numbers masked, as the data card
counts them), then the new rule's rejected good pairs and accepted bad pairs, for inspection. Pure
Python: no model, about a second.
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.runtime.synthesis.grounding import STOPWORDS, judge_answer, judge_question

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "grounding"
Rule = Callable[[str, str, str, float], str | None]  # question, answer, chunk, min_support -> reason


def load(folder: Path = FIXTURE) -> list[dict[str, Any]]:
    """The labelled pairs, each with its chunk's text under ``context``."""
    chunks = {c["id"]: c["text"] for c in map(json.loads, (folder / "chunks.jsonl").read_text("utf-8").splitlines())}
    pairs = [json.loads(line) for line in (folder / "smollm2_pairs.jsonl").read_text("utf-8").splitlines()]
    return [{**pair, "context": chunks[pair["chunk_id"]]} for pair in pairs]


def old_rule(question: str, answer: str, context: str, min_support: float) -> str | None:
    """grounding.support before issue 19, as the stage applied it."""
    def words(text: str) -> list[str]:
        return re.findall(r"\w+", unicodedata.normalize("NFKC", text).casefold())
    wanted = {word for word in words(answer) if word not in STOPWORDS}
    score = len(wanted & set(words(context))) / len(wanted) if wanted else 0.0
    return None if score >= min_support else f"answer support {score:.2f} < min_support {min_support:g}"


def new_rule(question: str, answer: str, context: str, min_support: float) -> str | None:
    """The stage's checks for a generative student (examples._grounded)."""
    return judge_question(question, context) or judge_answer(answer, context, min_support, question)[1]


@dataclass
class Scored:
    """One rule over the labelled pairs."""

    pairs: int = 0
    good: int = 0
    accepted: int = 0
    accepted_good: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    rejected_good: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    accepted_bad: list[dict[str, Any]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.accepted_good / self.accepted if self.accepted else 0.0

    @property
    def recall(self) -> float:
        return self.accepted_good / self.good if self.good else 0.0

    @property
    def bad_rejected(self) -> float:
        """Share of the bad pairs rejected: with few good pairs, the steadier number."""
        bad = self.pairs - self.good
        return (bad - (self.accepted - self.accepted_good)) / bad if bad else 0.0


def score(rule: Rule, pairs: list[dict[str, Any]], min_support: float) -> Scored:
    scored = Scored()
    for pair in pairs:
        good = pair["label"] == "good"
        reason = rule(pair["question"], pair["answer"], pair["context"], min_support)
        scored.pairs += 1
        scored.good += good
        if reason is None:
            scored.accepted += 1
            scored.accepted_good += good
            if not good:
                scored.accepted_bad.append(pair)
        else:
            scored.reasons[re.sub(r"\d+(\.\d+)?", "N", reason)] += 1
            if good:
                scored.rejected_good.append((pair, reason))
    return scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--min-support", type=float, default=0.5, help="data.synthesis.min_support (default 0.5)")
    parser.add_argument("--show", type=int, default=40, help="most pairs listed per kind of mistake")
    args = parser.parse_args()
    pairs = load()
    results = {"old": score(old_rule, pairs, args.min_support), "new": score(new_rule, pairs, args.min_support)}
    bad = Counter(pair["why"] for pair in pairs if pair["label"] != "good")
    print(f"{len(pairs)} pairs from {len({p['chunk_id'] for p in pairs})} chunks, min_support {args.min_support:g}; "
          f"labelled bad: " + ", ".join(f"{why} {n}" for why, n in bad.most_common()))
    print(f"\n{'rule':<5} {'pairs':>5} {'good':>5} {'accepted':>8} {'precision':>9} {'recall':>7} {'bad rejected':>12}")
    for name, s in results.items():
        print(f"{name:<5} {s.pairs:>5} {s.good:>5} {s.accepted:>8} {s.precision:>9.2f} {s.recall:>7.2f} "
              f"{s.bad_rejected:>12.2f}")
    for name, s in results.items():
        print(f"\n{name} rule, rejections by reason:")
        for reason, count in s.reasons.most_common():
            print(f"  {count:>3}  {reason}")
    new = results["new"]
    print(f"\nnew rule, rejected good pairs ({len(new.rejected_good)}):")
    for pair, reason in new.rejected_good[:args.show]:
        print(f"  [{pair['chunk_id']}] Q {pair['question']!r}\n      A {pair['answer']!r}\n      -> {reason}")
    print(f"\nnew rule, accepted bad pairs ({len(new.accepted_bad)}):")
    for pair in new.accepted_bad[:args.show]:
        print(f"  [{pair['chunk_id']}] Q {pair['question']!r}\n      A {pair['answer']!r}\n"
              f"      labelled {pair['why']}")


if __name__ == "__main__":
    main()
