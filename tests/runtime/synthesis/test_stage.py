"""The synthesize stage end to end with a scripted teacher (model only; everything else real):
golden outputs, repairs, rejections with reasons, no leakage across splits, resume after a crash
and after kill -9 with identical output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from distill.compiler.records.data_card import DATA_CARD, DataCard, TeacherYield
from distill.runtime.sources.records import Answer, QAExample
from distill.runtime.synthesis.generate import Request
from distill.runtime.synthesis.stage import NoTrainingData, synthesize
from tests.runtime.synthesis.scripted import QA, Scripted, chunks, spec

GOLDEN = Path(__file__).parent / "golden"
OUTPUTS = ("train.jsonl", "val.jsonl", "test.jsonl", "rejected.jsonl", "data_card.json")
REPO = Path(__file__).resolve().parents[3]


def run(folder: Path, generator: Scripted | None = None, batch: int = 2, **data: object) -> DataCard:
    return synthesize(spec(**data), chunks(), [], generator or Scripted(), batch, folder, "scripted")


def records(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def test_golden_outputs(tmp_path: Path) -> None:
    run(tmp_path)
    if os.environ.get("DISTILL_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        for name in OUTPUTS:
            (GOLDEN / name).write_text((tmp_path / name).read_text())
    for name in OUTPUTS:
        assert (tmp_path / name).read_text() == (GOLDEN / name).read_text(), name


def test_valid_malformed_partial_and_ungrounded_replies(tmp_path: Path) -> None:
    generator = Scripted()
    card = run(tmp_path, generator)
    kept = [r for name in ("train", "val", "test") for r in records(tmp_path, f"{name}.jsonl")]
    teacher = {r["question"]: r for r in kept if r["origin"] == "teacher"}
    # valid, repaired (fenced JSON on the second attempt), trailing comma, partially valid
    assert {"How long does the pump run?", "How much power does the pump draw?",
            "How often should the filter be cleaned?", "How long does the battery last?", "What does error E4 mean?",
            "How fast should the valve be opened?"} == set(teacher)
    assert all(r["support"] >= 0.5 and r["chunk"] and r["source"] and r["pages"] == [1, 1] for r in teacher.values())
    rejected = records(tmp_path, "rejected.jsonl")
    reasons = {(r["stage"], r["source"]): r["reason"] for r in rejected}
    assert reasons[("ground", "display.md")] == "answer support 0.00 < min_support 0.5"
    assert "item 3" in reasons[("validate", "display.md")] and "question" in reasons[("validate", "display.md")]
    assert reasons[("generate", "noise.md")].startswith("no usable item after 3 attempt(s)")
    assert reasons[("dedup", "valve.md")].startswith("duplicate question of example ")
    # filter: 1 repair; display: partial every time -> 2 repairs; noise: 2 repairs
    filter_id = next(c.id for c in chunks() if c.source == "filter.md")
    assert [k for k in generator.calls if k.startswith(filter_id)] == [f"{filter_id}:qa:0", f"{filter_id}:qa:1"]
    assert card.generation.repairs == 5 and card.generation.chunks_repaired == 3
    assert card.rejected.total == len(rejected) == 4


def test_no_group_straddles_splits_and_augmentations_stay_in_train(tmp_path: Path) -> None:
    run(tmp_path)
    split_of: dict[str, str] = {}
    for name in ("train", "val", "test"):
        for record in records(tmp_path, f"{name}.jsonl"):
            assert split_of.setdefault(record["group"], name) == name, record["group"]
            if record["origin"] in ("paraphrase", "typo"):
                assert name == "train"
    train = records(tmp_path, "train.jsonl")
    ids = {r["id"] for r in train}
    assert all(r["parent"] in ids for r in train if r["origin"] == "paraphrase")
    assert any(r["origin"] == "paraphrase" for r in train) and {"val", "test"} <= set(split_of.values())


def test_split_by_question_holds_out_questions_and_keeps_every_document_in_train(tmp_path: Path) -> None:
    closed_book = spec(split={"val": 0.2, "test": 0.3, "by": "question"})  # answer_only: the text is learned anyway
    assert closed_book.loss.mask == "answer_only"
    synthesize(closed_book, chunks(), [], Scripted(), 2, tmp_path, "scripted")
    splits = {name: records(tmp_path, f"{name}.jsonl") for name in ("train", "val", "test")}
    documents = [r for r in splits["train"] if r["origin"] == "document"]
    assert {r["chunk"] for r in documents} == {c.id for c in chunks()}
    assert not any(r["origin"] == "document" for name in ("val", "test") for r in splits[name])
    held_out = splits["val"] + splits["test"]
    # Questions of one chunk land in different splits: each question is its own group.
    assert held_out and all(r["group"] == r["id"] for r in held_out)
    train_chunks = {r["chunk"] for r in splits["train"] if r["origin"] == "teacher"}
    assert train_chunks & {r["chunk"] for r in held_out}


def test_learning_the_documents_adds_their_text_beside_the_questions(tmp_path: Path) -> None:
    base = spec(split={"val": 0.2, "test": 0.2, "by": "chunk"})
    synthesize(replace(base, loss=replace(base.loss, mask="all")), chunks(), [], Scripted(), 2, tmp_path, "scripted")
    found = [(name, r) for name in ("train", "val", "test") for r in records(tmp_path, f"{name}.jsonl")]
    assert sorted(r["chunk"] for _, r in found if r["origin"] == "document") == sorted(c.id for c in chunks())
    # By chunk, a chunk's text goes where its questions go.
    text_split = {r["chunk"]: name for name, r in found if r["origin"] == "document"}
    questions = [(name, r) for name, r in found if r["origin"] == "teacher"]
    assert questions and all(text_split[r["chunk"]] == name for name, r in questions)


def test_extractive_students_get_spans(tmp_path: Path) -> None:
    base = spec()
    extractive = replace(base, student=replace(base.student, task="extractive-qa"))
    synthesize(extractive, chunks(), [], Scripted(), 2, tmp_path, "scripted")
    kept = [r for name in ("train", "val", "test") for r in records(tmp_path, f"{name}.jsonl")]
    assert kept
    for record in kept:
        start = record["answer_start"]
        assert record["context"][start:start + len(record["answer"])] == record["answer"]
    # "The pump runs for 20 minutes." is a span; "Every month, with warm water." is not
    assert "How long does the pump run?" in {r["question"] for r in kept}
    assert "answer is not a span of the chunk" in {r["reason"] for r in records(tmp_path, "rejected.jsonl")}


def test_a_crash_resumes_without_regenerating_finished_chunks(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    run(reference, batch=2)

    class Crashing(Scripted):
        def generate(self, requests: Sequence[Request]) -> list[str]:
            if len(self.calls) >= 3:
                raise RuntimeError("teacher died")
            return super().generate(requests)

    crashed = tmp_path / "crashed"
    first = Crashing()
    with pytest.raises(RuntimeError):
        run(crashed, first, batch=2)
    second = Scripted()
    run(crashed, second, batch=2)
    finished = {k.split(":")[0] for k in first.calls}
    assert finished and not finished & {k.split(":")[0] for k in second.calls}
    assert json.loads((crashed / "data_card.json").read_text())["generation"]["resumed_chunks"] == 2
    for name in OUTPUTS[:-1]:
        assert (crashed / name).read_bytes() == (reference / name).read_bytes(), name


def test_kill_9_then_rerun_gives_identical_output(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    synthesize(spec(), chunks(), [], Scripted(), 1, reference, "scripted")
    out, log = tmp_path / "killed", tmp_path / "requests.log"
    child = subprocess.Popen([sys.executable, "-m", "tests.runtime.synthesis.scripted", str(out), str(log), "0.3"],
                             cwd=REPO, start_new_session=True)
    journal = out / "generation.journal.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    journaled = {json.loads(line)["key"] for line in journal.read_text().splitlines()[1:]}
    assert 2 <= len(journaled) < len(chunks()), "the kill should land mid-run"
    rerun = Scripted()
    synthesize(spec(), chunks(), [], rerun, 1, out, "scripted")
    assert not journaled & {key.split(":")[0] for key in rerun.calls}
    for name in OUTPUTS[:-1]:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_journal_for_other_settings_is_not_reused(tmp_path: Path) -> None:
    run(tmp_path)
    again = Scripted()
    run(tmp_path, again, synthesis={"kind": "qa", "pairs_per_chunk": 3, "max_repairs": 2})
    assert len({k.split(":")[0] for k in again.calls if ":qa:" in k}) == len(chunks())


class Garbage(Scripted):
    def _reply(self, request: Request) -> str:
        return "\x00 lorem {{{ [[ ipsum"


def test_all_garbage_stops_with_no_training_data(tmp_path: Path) -> None:
    with pytest.raises(NoTrainingData, match="no training data survived"):  # the yield gate off
        run(tmp_path, Garbage(), synthesis={"kind": "qa", "pairs_per_chunk": 2, "max_repairs": 2, "min_yield": 0})
    rejected = records(tmp_path, "rejected.jsonl")
    assert len(rejected) == len(QA) and {r["stage"] for r in rejected} == {"generate"}
    assert DataCard.read(tmp_path / DATA_CARD).examples == {"train": 0, "val": 0, "test": 0}
    assert "## Rejected: 6" in (tmp_path / "DATA_CARD.md").read_text()


def dataset() -> list[QAExample]:
    context = "The valve opens a quarter turn every five seconds."
    return [QAExample("q1", "How fast does the valve open?", context,
                      (Answer("a quarter turn every five seconds", 17),), "qa.jsonl", "sha-qa", "line 1"),
            QAExample("q2", "Which gas is inert?", "", (Answer("Argon", None),), "qa.jsonl", "sha-qa", "line 2"),
            QAExample("q3", "Fill in the blank: ___ is a noble gas.", "", (Answer("Neon", None),), "qa.jsonl",
                      "sha-qa", "line 3")]


@pytest.mark.parametrize("task", ["causal-lm", "extractive-qa"])
def test_dataset_examples_join_the_split_as_they_are(tmp_path: Path, task: str) -> None:
    base = spec(synthesis=None, augmentation={"paraphrases": 0}, split={"val": 0.0, "test": 0.0})
    synthesize(replace(base, student=replace(base.student, task=task)), [], dataset(), None, 4, tmp_path, "none")
    kept = records(tmp_path, "train.jsonl")
    assert {r["origin"] for r in kept} == {"dataset"} and len({r["group"] for r in kept}) == len(kept)
    if task == "causal-lm":
        assert [r["answer"] for r in kept] == ["a quarter turn every five seconds", "Argon", "Neon"]
    else:
        assert [r["answer_start"] for r in kept] == [17]
        assert [r["reason"] for r in records(tmp_path, "rejected.jsonl")] == [
            "no answer span in a context (an extractive-qa student needs one)"] * 2


def test_a_dataset_pinned_to_test_is_held_out_whole_and_never_paraphrased(tmp_path: Path) -> None:
    exam = [replace(qa, split="test") for qa in dataset()]
    synthesize(spec(split={"val": 0.2, "test": 0.0, "by": "chunk"}), chunks(), exam, Scripted(), 2, tmp_path,
               "scripted")
    splits = {name: records(tmp_path, f"{name}.jsonl") for name in ("train", "val", "test")}
    assert sorted(r["question"] for r in splits["test"]) == sorted(qa.question for qa in exam)
    assert {r["origin"] for r in splits["test"]} == {"dataset"}
    assert all(r["origin"] != "dataset" for name in ("train", "val") for r in splits[name])
    assert any(r["origin"] == "paraphrase" for r in splits["train"])  # the teacher's own pairs still are
    assert not any(r.get("parent") in {t["id"] for t in splits["test"]} for r in splits["train"])


def test_a_damaged_journal_stops_the_stage_naming_the_line(tmp_path: Path) -> None:
    from distill.runtime.synthesis.journal import JournalDamaged

    run(tmp_path)
    journal = tmp_path / "generation.journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join([lines[0], "not json", *lines[2:]]) + "\n")
    with pytest.raises(JournalDamaged, match=r"generation\.journal\.jsonl:2: not a journal entry"):
        run(tmp_path)
    assert journal.read_text().splitlines()[1] == "not json"  # nothing was overwritten


def many_chunks(count: int) -> list:
    from distill.runtime.sources.records import Chunk, chunk_id

    text = "The pump runs for 20 minutes before it stops. It draws 40 watts while running."
    return [Chunk(chunk_id(f"sha-{i}", 1, 1, 0, len(text), text), text, f"doc{i}.md", f"sha-{i}", 1, 1, 0,
                  len(text), len(text.split())) for i in range(count)]


def test_an_unusable_teacher_stops_after_its_first_chunks_naming_the_gate(tmp_path: Path) -> None:
    from distill.runtime.synthesis.yields import CHECK_AFTER_CHUNKS, TeacherUnusable

    teacher = Garbage()
    with pytest.raises(TeacherUnusable) as stopped:
        synthesize(spec(), many_chunks(40), [], teacher, 4, tmp_path, "garbage")
    asked = {key.split(":")[0] for key in teacher.calls}
    assert len(asked) == CHECK_AFTER_CHUNKS  # two batches of 4, not all 40 chunks
    assert stopped.value.message.startswith("the teacher's yield is 0 of 16 requested items (0%) over its "
                                            "first 8 of 40 chunks, under data.synthesis.min_yield 10%")
    assert "data.synthesis.decoding: constrained" in stopped.value.hint
    assert stopped.value.exit_code == 8


def test_yield_is_counted_per_chunk_and_overall_and_a_low_one_is_said(tmp_path: Path) -> None:
    card = run(tmp_path)
    teacher_yield = card.generation.teacher_yield
    # pump 2, filter 1 (repaired), display 1 of 3 items, noise 0, valve 1 (its second question is
    # its first again), battery 1
    assert teacher_yield == TeacherYield(requested=12, accepted=6, ratio=0.5, chunks=6,
                                         chunks_by_accepted={"0": 1, "1": 4, "2": 1},
                                         lost_by_stage={"dedup": 1, "generate": 1, "ground": 1, "validate": 1})
    assert card.generation.warnings == []
    assert "Teacher yield: 6 of 12 requested items (50%)" in (tmp_path / "DATA_CARD.md").read_text()
    low = run(tmp_path / "low", synthesis={"kind": "qa", "pairs_per_chunk": 6, "max_repairs": 2, "temperature": 0})
    assert low.generation.warnings == [
        "low teacher yield: 6 of 36 requested items (17%) were usable; see the data card for the reasons"]
