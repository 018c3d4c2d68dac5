"""The synthesize stage: chunks (and dataset examples) -> train/val/test JSONL, every rejected item
with its reason, and a data card.

Passes:
  1. generate: per chunk, the task prompt naming focus sentences, then up to ``max_repairs`` more
     requests: repair prompts while a reply is unusable, top-ups while a qa chunk lacks grounded
     pairs (``_follow_up``); chunks go to the teacher in fixed batches (chunk order, the plan's batch size) and
     each finished batch is journaled, so a killed run regenerates only unfinished batches.
  2. examples (pure): validate, ground, deduplicate (``examples.py``); split by group, never by row.
  3. paraphrase: the teacher rewrites each train question ``augmentation.paraphrases`` times
     (journaled the same way); val/test stay as written, so evaluation never sees augmentations.
  4. typo noise: one seeded noisy copy of each train question.
Outputs are a pure function of the journals and inputs: a resumed run writes the same bytes as an
uninterrupted one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from distill.compiler.codec import to_data
from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.fsutil import write_atomic
from distill.compiler.records.data_card import DATA_CARD, DataCard, Generation
from distill.compiler.records.examples import Example
from distill.compiler.records.record import lines_text
from distill.compiler.spec import Spec
from distill.runtime.progress import Progress
from distill.runtime.ranks import barrier, ranks
from distill.runtime.sources.records import Chunk, QAExample
from distill.runtime.synthesis.augment import typo_noise
from distill.runtime.synthesis.card import card_markdown, data_card
from distill.runtime.synthesis.constrain import reply_schema, schema_text, strings_schema
from distill.runtime.synthesis.examples import (
    Grounding,
    Rejection,
    asks,
    chunk_examples,
    dataset_example,
    deduplicate,
    document_example,
    keep,
    stable_id,
)
from distill.runtime.synthesis.focus import pick, sentences
from distill.runtime.synthesis.generate import Generator, Request
from distill.runtime.synthesis.journal import Journal
from distill.runtime.synthesis.parse import parse_items, parse_strings
from distill.runtime.synthesis.prompts import (
    Message,
    default_prompt,
    paraphrase_messages,
    repair_messages,
    task_messages,
)
from distill.runtime.synthesis.split import SplitName, assign_splits, summarize
from distill.runtime.synthesis.yields import YieldCount, count_chunk, gate, items_per_chunk, low_yield_warning

VERSION = 3  # 2: replies decoded under their schema (data.synthesis.decoding); 3: indented, focus, top-ups
SPLITS: tuple[SplitName, ...] = ("train", "val", "test")
# A paraphrase reply is n short questions: 128 tokens hold 3 of ~100 characters.
PARAPHRASE_MAX_NEW_TOKENS = 128


class NoTrainingData(DistillError):
    """Nothing survived validation and grounding: training would learn nothing."""

    exit_code = ExitCode.NO_DATA


def synthesize(spec: Spec, chunks: Sequence[Chunk], dataset: Sequence[QAExample], generator: Generator | None,
               batch: int, folder: Path, teacher_key: str, progress: Progress | None = None) -> DataCard:
    """Run the stage into ``folder``; returns the data card.

    Args:
        generator: the teacher; ``None`` when nothing is synthesized or paraphrased.
        batch: requests per ``generate`` call (the plan's synthesis batch).
        teacher_key: identifies the teacher and its settings (model digests, quantization): a
            journal written by another teacher is not reused.

    Raises:
        NoTrainingData: after writing the outputs, when the train split is empty.
    """
    generation = Generation()
    grounding = Grounding(spec.student.task == "extractive-qa",
                          spec.data.synthesis.min_support if spec.data.synthesis else 0.0)
    replies = _generation_pass(spec, chunks, generator, batch, folder, teacher_key, generation, progress, grounding)
    examples, rejections, pinned = _candidates(spec, chunks, dataset, replies, grounding)
    seen: dict[str, str] = {}
    kept = keep(deduplicate(examples, seen), rejections)
    split = spec.data.split
    if split.by == "question":  # the documents are what the student studies: all in train
        pinned |= {e.id: "train" for e in kept if e.origin == "document"}
    groups = Counter(example.group for example in kept if example.id not in pinned)
    assignment = assign_splits(groups, split.val, split.test, spec.seed)
    by_split: dict[SplitName, list[Example]] = {
        name: [e for e in kept if pinned.get(e.id, assignment.get(e.group)) == name] for name in SPLITS}
    paraphrased = _paraphrase_pass(spec, by_split["train"], generator, batch, folder,
                                   _fingerprint(teacher_key, replies), generation, progress)
    by_split["train"] += keep(deduplicate(_paraphrases(spec, by_split["train"], paraphrased, rejections), seen),
                               rejections)
    by_split["train"] += _typo_copies(spec, by_split["train"])
    summary = summarize(groups, assignment, split.val, split.test, by=split.by)
    card = data_card(by_split, rejections, generation, summary, len(chunks), len(dataset))
    if ranks()[0] == 0:  # every rank computed the same outputs; one writes them
        _write(folder, by_split, rejections, card)
    if not by_split["train"]:
        raise NoTrainingData(
            f"no training data survived synthesis: {len(rejections)} item(s) rejected, reasons in "
            f"{folder / 'rejected.jsonl'} and {folder / 'DATA_CARD.md'}",
            hint="check the teacher (an instruction-tuned model with a chat template), data.synthesis.prompt, "
                 "data.synthesis.min_support and data.synthesis.max_new_tokens")
    return card


# --------------------------------------------------------------------------- generation


def _generation_pass(spec: Spec, chunks: Sequence[Chunk], generator: Generator | None, batch: int, folder: Path,
                     teacher_key: str, generation: Generation, progress: Progress | None, grounding: Grounding
                     ) -> dict[str, list[str]]:
    """Replies per chunk id (first attempt, then repairs), from the journal or the teacher; the
    teacher's yield is counted as batches finish and gated (``yields.gate``)."""
    synthesis = spec.data.synthesis
    if synthesis is None or not chunks:
        return {}
    if generator is None:
        raise ValueError("data.synthesis needs a generator")
    template = synthesis.prompt or default_prompt(synthesis.kind, spec.student.task == "extractive-qa")
    n = synthesis.pairs_per_chunk if synthesis.kind == "qa" else synthesis.turns
    fingerprint = _fingerprint(VERSION, teacher_key, to_data(synthesis), spec.student.task, spec.seed,
                               [chunk.id for chunk in chunks])
    by_id = {chunk.id: chunk for chunk in chunks}
    running = YieldCount(items_per_chunk(synthesis))

    def observe(ids: Sequence[str], done: dict[str, Any]) -> str:
        for cid in ids:
            if cid in done:  # in a multi-process run, another rank's batch is not here yet
                count_chunk(running, by_id[cid], done[cid], synthesis, grounding)
        gate(running, synthesis.min_yield, len(chunks))
        return running.note()

    done, generation.resumed_chunks = journaled(
        folder, "generation", fingerprint, list(by_id), batch,
        lambda ids: _generate_batch([by_id[i] for i in ids], generator, template, n, spec, grounding), progress,
        observe)
    generation.decoding = synthesis.decoding
    replies = {chunk.id: done[chunk.id] for chunk in chunks}
    final = YieldCount(items_per_chunk(synthesis))
    for chunk in chunks:
        count_chunk(final, chunk, replies[chunk.id], synthesis, grounding)
    gate(final, synthesis.min_yield, len(chunks))
    generation.teacher_yield = final.to_record()
    generation.warnings += [w for w in (low_yield_warning(final),) if w]
    # Counted from the replies, not while generating: the same numbers whichever process, or
    # which run before a crash, asked.
    parsed = [[parse_items(reply, synthesis.kind, synthesis.turns) for reply in attempts]
              for attempts in replies.values()]
    generation.requests = sum(len(attempts) for attempts in parsed)
    generation.top_ups = sum(len(asks(attempts)) - 1 for attempts in parsed)
    generation.repairs = generation.requests - len(parsed) - generation.top_ups
    generation.chunks_repaired = sum(any(len(ask) > 1 for ask in asks(attempts)) for attempts in parsed)
    generation.prose_replies = sum(reply.form == "prose" for attempts in parsed for reply in attempts)
    return replies


def journaled(folder: Path, name: str, fingerprint: str, keys: Sequence[str], batch: int,
              generate: Callable[[list[str]], dict[str, Any]], progress: Progress | None,
              observe: Callable[[Sequence[str], dict[str, Any]], str] = lambda keys, done: ""
              ) -> tuple[dict[str, Any], int]:
    """Results for every key, generated in fixed batches of ``keys`` (in order) and journaled;
    and how many keys earlier runs had finished. ``observe(batch keys, results so far)`` runs
    after each batch (journaled or not) and returns the progress line's note; it may raise to stop.

    Resumable: keys any journal of this fingerprint already holds are not generated again. In a
    multi-process run (torchrun), rank r generates batches r, r + world, ... into its own journal
    (``<name>.journal.rank<r>.jsonl``; rank 0's is ``<name>.journal.jsonl``) and, after a barrier,
    every rank reads them all: per-request seeded sampling makes a reply independent of the rank
    and batch it ran in, so the union equals a one-process run.
    """
    rank, world = ranks()
    own = Journal(folder / _journal_name(name, rank), fingerprint)
    done = {**_others(folder, name, own, fingerprint), **own.load()}
    resumed = sum(key in done for key in keys)
    for index, start in enumerate(range(0, len(keys), batch)):
        todo = [key for key in keys[start:start + batch] if key not in done]
        if todo and index % world == rank:
            finished = generate(todo)
            own.append(finished)
            done.update(finished)
        note = observe(keys[start:start + batch], done)
        if progress is not None and rank == 0:
            progress(name, min(start + batch, len(keys)), len(keys), note)
    if world > 1:
        barrier()
        done.update(_others(folder, name, own, fingerprint))
    return done, resumed


def _journal_name(name: str, rank: int) -> str:
    return f"{name}.journal.jsonl" if rank == 0 else f"{name}.journal.rank{rank}.jsonl"


def _others(folder: Path, name: str, own: Journal, fingerprint: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path in sorted(folder.glob(f"{name}.journal*.jsonl")):
        if path != own.path:
            found.update(Journal(path, fingerprint).read())
    return found


def _generate_batch(chunks: Sequence[Chunk], generator: Generator, template: str, n: int, spec: Spec,
                    grounding: Grounding) -> dict[str, list[str]]:
    """First asks for the batch together, then rounds of follow-ups for the chunks that need one
    (``_follow_up``), up to ``max_repairs`` more requests per chunk."""
    synthesis = spec.data.synthesis
    assert synthesis is not None
    asking = {chunk.id: _Ask.first(chunk, template, n) for chunk in chunks}
    replies: dict[str, list[str]] = {chunk.id: [] for chunk in chunks}
    for attempt in range(synthesis.max_repairs + 1):
        pending = list(asking)
        requests = [asking[cid].request(f"{cid}:qa:{attempt}", spec) for cid in pending]
        for cid, reply in zip(pending, generator.generate(requests), strict=True):
            replies[cid].append(reply)
            follow = _follow_up(asking.pop(cid), reply, replies[cid], n, spec, grounding)
            if follow is not None:
                asking[cid] = follow
        if not asking:
            break
    return replies


@dataclass
class _Ask:
    """What one chunk is being asked: ``count`` items about its ``focus`` sentences; ``messages``
    set for a repair (the task, the unusable reply, what was wrong), otherwise the task prompt."""

    chunk: Chunk
    template: str
    count: int  # qa: pairs; a conversation: its exchanges
    used: tuple[str, ...]  # focus sentences named by earlier asks
    focus: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()

    @classmethod
    def first(cls, chunk: Chunk, template: str, n: int) -> _Ask:
        ask = cls(chunk, template, n, ())
        return replace(ask, focus=tuple(pick(ask.sentences, (), n)))

    @property
    def sentences(self) -> list[str]:
        return sentences(self.chunk.text) if "{focus}" in self.template else []

    def task(self) -> tuple[Message, ...]:
        return tuple(task_messages(self.template, self.chunk.text, self.count, self.focus))

    def request(self, key: str, spec: Spec) -> Request:
        synthesis = spec.data.synthesis
        assert synthesis is not None
        schema = (schema_text(reply_schema(synthesis.kind, self.count, synthesis.turns, synthesis.max_new_tokens))
                  if synthesis.decoding == "constrained" else None)
        return Request(key, self.messages or self.task(), schema)


def _follow_up(ask: _Ask, reply: str, replies: Sequence[str], n: int, spec: Spec, grounding: Grounding
               ) -> _Ask | None:
    """The chunk's next request, or None when it is done:
    * a repair when the reply did not parse clean: the conversation so far and what was wrong;
    * a top-up when the chunk has fewer than ``n`` distinct grounded items: the task for the
      missing ones, naming focus sentences not named before. At temperature 0 a top-up that names
      no new sentence would repeat an earlier reply, so none is sent.
    The repair/top-up rule is the one ``examples.asks`` reads a journaled chunk back with."""
    synthesis = spec.data.synthesis
    assert synthesis is not None
    parsed = parse_items(reply, synthesis.kind, synthesis.turns)
    if not parsed.clean:
        problems = parsed.problems or ["the reply was not in the format asked for"]
        return replace(ask, messages=tuple(repair_messages(ask.task(), reply, problems)))
    found, _ = chunk_examples(ask.chunk, replies, synthesis.kind, synthesis.turns, grounding, ask.chunk.id)
    missing = items_per_chunk(synthesis) - len(found)
    if missing <= 0:
        return None
    used = ask.used + ask.focus
    focus = tuple(pick(ask.sentences, used, missing))
    if not focus and synthesis.temperature == 0:
        return None
    count = (len(focus) or missing) if synthesis.kind == "qa" else n
    return _Ask(ask.chunk, ask.template, count, used, focus)


def reply_budget(spec: Spec) -> tuple[str, int]:
    """How the teacher decodes and its tokens per reply: data.synthesis's, or for paraphrases
    alone (no synthesis) constrained and PARAPHRASE_MAX_NEW_TOKENS."""
    synthesis = spec.data.synthesis
    return (synthesis.decoding, synthesis.max_new_tokens) if synthesis else ("constrained", PARAPHRASE_MAX_NEW_TOKENS)


def _fingerprint(*parts: object) -> str:
    return stable_id(*parts)


# --------------------------------------------------------------------------- examples


def _candidates(spec: Spec, chunks: Sequence[Chunk], dataset: Sequence[QAExample], replies: dict[str, list[str]],
                grounding: Grounding) -> tuple[list[Example], list[Rejection], dict[str, SplitName]]:
    """Every grounded example in input order, every rejection so far, and the split of each
    example whose dataset source names one (example id -> split)."""
    synthesis, by = spec.data.synthesis, spec.data.split.by
    examples: list[Example] = []
    rejections: list[Rejection] = []
    for chunk in chunks:
        group = chunk.source if by == "document" else chunk.id
        if spec.loss.mask == "all" or by == "question":  # the documents' text is learned, beside any questions
            examples.append(document_example(chunk, group))
        if synthesis is None:
            continue
        found, rejected = chunk_examples(chunk, replies[chunk.id], synthesis.kind, synthesis.turns, grounding, group)
        examples += [replace(e, group=e.id) for e in found] if by == "question" else found
        rejections += rejected
    pinned: dict[str, SplitName] = {}
    for qa in dataset:
        example, rejection = dataset_example(qa, grounding.extractive, _dataset_group(qa, by))
        examples += [example] if example else []
        rejections += [rejection] if rejection else []
        if example is not None and qa.split != "auto":
            pinned[example.id] = qa.split
    return examples, rejections, pinned


def _dataset_group(example: QAExample, by: str) -> str:
    """A dataset's "document" is a SQuAD article (``data[i]``); otherwise, and for ``by: chunk``,
    questions on one context form a group, so no context is seen in two splits. Closed-book
    items (no context), and every item under ``by: question``, are each their own group."""
    if by == "document" and example.location.startswith("data["):
        return f"{example.source}#{example.location.split('.')[0]}"
    if not example.context or by == "question":
        return f"{example.source}#item:{example.id}"
    return f"{example.source}#context:{stable_id(example.context)}"


# --------------------------------------------------------------------------- augmentation


def _paraphrase_pass(spec: Spec, train: Sequence[Example], generator: Generator | None, batch: int, folder: Path,
                     fingerprint: str, generation: Generation, progress: Progress | None) -> dict[str, str]:
    """The teacher's paraphrase reply per train QA example id."""
    n = spec.data.augmentation.paraphrases
    targets = [example for example in train if _paraphrasable(example)]
    if n == 0 or not targets:
        return {}
    if generator is None:
        raise ValueError("augmentation.paraphrases needs a generator")
    by_id = {example.id: example for example in targets}
    decoding, max_new_tokens = reply_budget(spec)
    schema = schema_text(strings_schema(n, max_new_tokens)) if decoding == "constrained" else None
    generation.decoding = decoding

    def generate(ids: list[str]) -> dict[str, str]:
        requests = [Request(f"{i}:paraphrase", tuple(paraphrase_messages(by_id[i].question, n)), schema)
                    for i in ids]
        return dict(zip(ids, generator.generate(requests), strict=True))

    done, _ = journaled(folder, "paraphrase", _fingerprint(VERSION, fingerprint, n, spec.seed), list(by_id), batch,
                        generate, progress)
    generation.paraphrase_requests = len(targets)
    if any(example.origin == "teacher" and len(example.messages) > 2 for example in train):
        generation.notes.append("paraphrases apply to QA pairs; conversations are not paraphrased")
    return {example.id: done[example.id] for example in targets}


def _paraphrasable(example: Example) -> bool:
    return example.origin in ("teacher", "dataset") and len(example.messages) == 2


def _paraphrases(spec: Spec, train: Sequence[Example], replies: dict[str, str],
                 rejections: list[Rejection]) -> Iterable[Example]:
    n = spec.data.augmentation.paraphrases
    for example in train:
        if example.id not in replies:
            continue
        parsed = parse_strings(replies[example.id], n)
        for problem in ([parsed.error] if parsed.error else []) + [r.reason for r in parsed.rejected]:
            rejections.append(Rejection("paraphrase", problem, example.source, example.chunk, {"parent": example.id}))
        for index, item in enumerate(parsed.items):
            question = item["text"]
            yield replace(example, id=stable_id(example.id, "paraphrase", index), origin="paraphrase",
                          parent=example.id, question=question,
                          messages=({"role": "user", "content": question}, example.messages[1]))


def _typo_copies(spec: Spec, train: Sequence[Example]) -> list[Example]:
    """One noisy copy of each train question (seeded by the run seed and the example id)."""
    rate = spec.data.augmentation.typo_rate
    if rate <= 0:
        return []
    copies = []
    for example in train:
        if not example.messages:
            continue
        noisy = typo_noise(example.question, rate, f"{spec.seed}:{example.id}")
        if noisy != example.question:
            messages = ({"role": "user", "content": noisy}, *example.messages[1:])
            copies.append(replace(example, id=stable_id(example.id, "typo"), origin="typo", parent=example.id,
                                  question=noisy, messages=messages))
    return copies


# --------------------------------------------------------------------------- outputs


def _write(folder: Path, by_split: dict[SplitName, list[Example]], rejections: Sequence[Rejection],
           card: DataCard) -> None:
    for name in SPLITS:
        write_atomic(folder / f"{name}.jsonl", lines_text(by_split[name]))
    write_atomic(folder / "rejected.jsonl", lines_text(rejections))
    card.write(folder / DATA_CARD)
    write_atomic(folder / "DATA_CARD.md", card_markdown(card))
