"""The teacher's yield: of the items it was asked for (pairs per chunk, or one conversation per
chunk), how many parsed, validated and were grounded. A first-class number: shown while it
generates, in the data card and the model card, and gated (``data.synthesis.min_yield``) after the
first chunks, so a teacher that cannot do the job stops the build in minutes, not after hours.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.records.data_card import TeacherYield
from distill.compiler.spec import Synthesis
from distill.runtime.sources.records import Chunk
from distill.runtime.synthesis.examples import Grounding, Rejection, chunk_examples

CHECK_AFTER_CHUNKS = 8  # chunks the gate waits for: a few batches, enough to tell a bad teacher
LOW_YIELD = 0.5  # under half of what was asked: said in the build output and both cards

# The likely fix per stage where most items were lost.
_FIXES = {
    "generate": "the teacher's replies hold no usable items: let it decode under the reply schema "
                "(data.synthesis.decoding: constrained, the default), raise data.synthesis.max_new_tokens if its "
                "replies are cut off, or use an instruction-tuned teacher with a chat template",
    "validate": "the teacher's items miss what the format needs (a question mark, an answer): use a larger "
                "teacher, or write data.synthesis.prompt for it",
    "ground": "the teacher's answers are not supported by the chunks: use a larger teacher, or lower "
                 "data.synthesis.min_support if answers that paraphrase the text are fine",
}


class TeacherUnusable(DistillError):
    """The teacher's yield is under ``data.synthesis.min_yield``."""

    exit_code = ExitCode.NO_DATA


@dataclass
class YieldCount:
    """Items asked for and accepted, chunks by accepted count, and where the rest were lost."""

    per_chunk: int  # items asked of each chunk
    chunks: int = 0
    accepted: int = 0
    histogram: Counter[int] = field(default_factory=Counter)  # accepted items -> chunks
    lost: Counter[str] = field(default_factory=Counter)  # rejection stage -> items

    @property
    def requested(self) -> int:
        return self.chunks * self.per_chunk

    @property
    def ratio(self) -> float:
        return self.accepted / self.requested if self.requested else 0.0

    def add(self, accepted: int, rejections: Sequence[Rejection]) -> None:
        self.chunks += 1
        self.accepted += accepted
        self.histogram[accepted] += 1
        self.lost.update(r.stage for r in rejections)

    def note(self) -> str:
        """For the progress line: ``yield 12/30 (40%)``."""
        return f"yield {self.accepted}/{self.requested} ({self.ratio:.0%})"

    def to_record(self) -> TeacherYield:
        return TeacherYield(self.requested, self.accepted, round(self.ratio, 4), self.chunks,
                            {str(k): v for k, v in sorted(self.histogram.items())}, dict(sorted(self.lost.items())))


def items_per_chunk(synthesis: Synthesis) -> int:
    return synthesis.pairs_per_chunk if synthesis.kind == "qa" else 1


def count_chunk(count: YieldCount, chunk: Chunk, replies: Sequence[str], synthesis: Synthesis,
                grounding: Grounding) -> None:
    """Add one finished chunk: its replies parsed and grounded as the examples pass will."""
    found, rejected = chunk_examples(chunk, replies, synthesis.kind, synthesis.turns, grounding, chunk.id)
    count.add(min(len(found), count.per_chunk), rejected)  # a teacher writing more than asked yields no more


def gate(count: YieldCount, minimum: float, total_chunks: int) -> None:
    """Raise ``TeacherUnusable`` once ``CHECK_AFTER_CHUNKS`` chunks (or all, when fewer) are in
    and the yield is under ``minimum``."""
    if count.chunks < min(CHECK_AFTER_CHUNKS, total_chunks) or count.ratio >= minimum:
        return
    stage, _ = max(count.lost.items(), key=lambda kv: kv[1], default=("generate", 0))
    lost = ", ".join(f"{stage} {n}" for stage, n in count.lost.most_common()) or "none recorded"
    where = (f"its first {count.chunks} of {total_chunks} chunks" if count.chunks < total_chunks
             else f"all {total_chunks} chunks")
    stopped = "; stopped before asking for the rest" if count.chunks < total_chunks else ""
    raise TeacherUnusable(
        f"the teacher's yield is {count.accepted} of {count.requested} requested items ({count.ratio:.0%}) over "
        f"{where}, under data.synthesis.min_yield {minimum:.0%} (items lost by stage: {lost}){stopped}",
        hint=_FIXES.get(stage, _FIXES["generate"]) + "; the replies so far are in the stage's generation journal")


def low_yield_warning(count: YieldCount) -> str | None:
    if not count.requested or count.ratio >= LOW_YIELD:
        return None
    return (f"low teacher yield: {count.accepted} of {count.requested} requested items ({count.ratio:.0%}) "
            "were usable; see the data card for the reasons")

