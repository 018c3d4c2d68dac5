"""Splits by group: whole groups per split, deterministic, order-independent, near the fractions
asked for, and warnings where they cannot be met."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.runtime.synthesis.split import SplitSummary, assign_splits, summarize

MANY = {f"doc{i:03d}.pdf": 5 + (i * 7) % 11 for i in range(200)}  # 5..15 examples each, 1,997 in all


def _examples(groups: dict[str, int], assignment: dict[str, str], name: str) -> int:
    return sum(size for key, size in groups.items() if assignment[key] == name)


def test_every_group_gets_exactly_one_split() -> None:
    assignment = assign_splits(MANY, 0.1, 0.1, seed=0)
    assert set(assignment) == set(MANY)
    assert set(assignment.values()) == {"train", "val", "test"}


def test_rows_of_a_group_never_straddle_splits() -> None:
    # Paraphrases of one pair share a group key; the split is a function of the key alone.
    rows = [(f"doc{i % 30}", f"paraphrase {j}") for i in range(30) for j in range(4)]
    groups: dict[str, int] = {}
    for key, _ in rows:
        groups[key] = groups.get(key, 0) + 1
    assignment = assign_splits(groups, 0.2, 0.2, seed=3)
    by_group: dict[str, set[str]] = {}
    for key, _ in rows:
        by_group.setdefault(key, set()).add(assignment[key])
    assert all(len(splits) == 1 for splits in by_group.values())


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    assert assign_splits(MANY, 0.1, 0.1, seed=7) == assign_splits(MANY, 0.1, 0.1, seed=7)
    assert assign_splits(MANY, 0.1, 0.1, seed=7) != assign_splits(MANY, 0.1, 0.1, seed=8)


@settings(max_examples=100, deadline=None)
@given(sizes=st.dictionaries(st.text(min_size=1, max_size=6), st.integers(0, 30), max_size=25),
       order_seed=st.integers(0, 2**32), seed=st.integers(0, 10), val=st.floats(0, 0.45), test=st.floats(0, 0.45))
def test_independent_of_the_mapping_order(sizes: dict[str, int], order_seed: int, seed: int,
                                          val: float, test: float) -> None:
    keys = list(sizes)
    random.Random(order_seed).shuffle(keys)
    shuffled = {key: sizes[key] for key in keys}
    assignment = assign_splits(sizes, val, test, seed)
    assert assignment == assign_splits(shuffled, val, test, seed)
    assert list(assignment) == sorted(sizes)
    with_examples = [key for key, size in sizes.items() if size > 0]
    if with_examples:
        assert any(assignment[key] == "train" for key in with_examples)  # train always keeps one
    assert all(assignment[key] == "train" for key, size in sizes.items() if size == 0)


def test_fractions_are_met_closely_on_many_groups() -> None:
    total = sum(MANY.values())
    for seed in range(5):
        assignment = assign_splits(MANY, 0.1, 0.15, seed)
        # Test fills until it reaches round(0.15 * 1,997) = 300; it overshoots by less than one
        # group (at most 15 examples), and val likewise from 200.
        assert 300 <= _examples(MANY, assignment, "test") < 300 + 15
        assert 200 <= _examples(MANY, assignment, "val") < 200 + 15
        assert summarize(MANY, assignment, 0.1, 0.15).warnings == ()
        assert _examples(MANY, assignment, "train") == total - sum(
            _examples(MANY, assignment, name) for name in ("val", "test"))


def test_adding_a_group_moves_few_others() -> None:
    before = assign_splits(MANY, 0.1, 0.1, seed=1)
    after = assign_splits({**MANY, "new.pdf": 8}, 0.1, 0.1, seed=1)
    moved = sum(before[key] != after[key] for key in MANY)
    assert moved <= 4  # only groups at the fill boundaries can change split


def test_zero_fractions_put_everything_in_train() -> None:
    assert set(assign_splits(MANY, 0.0, 0.0, seed=0).values()) == {"train"}


def test_no_groups() -> None:
    assert assign_splits({}, 0.1, 0.1, seed=0) == {}
    assert summarize({}, {}, 0.1, 0.1) == SplitSummary({"train": 0, "val": 0, "test": 0},
                                                       {"train": 0, "val": 0, "test": 0}, ())


def test_one_group_stays_in_train_with_warnings() -> None:
    assignment = assign_splits({"manual.pdf": 40}, 0.1, 0.1, seed=0)
    assert assignment == {"manual.pdf": "train"}
    assert summarize({"manual.pdf": 40}, assignment, 0.1, 0.1).warnings == (
        "val: 0 groups — only 1 document with examples; use split.by: chunk",
        "test: 0 groups — only 1 document with examples; use split.by: chunk",
    )


def test_two_groups_give_test_one_and_keep_one_for_train() -> None:
    groups = {"a.pdf": 10, "b.pdf": 10}
    assignment = assign_splits(groups, 0.1, 0.1, seed=0)
    assert sorted(assignment.values()) == ["test", "train"]
    summary = summarize(groups, assignment, 0.1, 0.1)
    assert summary.groups == {"train": 1, "val": 0, "test": 1}
    assert summary.examples == {"train": 10, "val": 0, "test": 10}
    assert summary.warnings == (
        "val: 0 groups — only 2 documents with examples; use split.by: chunk",
        "test: 50.0% of examples (10 of 20), asked 10.0% — documents are assigned whole; "
        "more, smaller documents get closer",
    )


def test_three_groups_give_each_split_one_even_below_one_example_of_target() -> None:
    # round(0.01 * 30) = 0 examples, yet test and val asked for something: one group each.
    groups = {"a": 10, "b": 10, "c": 10}
    assert sorted(assign_splits(groups, 0.01, 0.01, seed=0).values()) == ["test", "train", "val"]


def test_tiny_fraction_below_three_groups_gets_nothing() -> None:
    assignment = assign_splits({"a": 10, "b": 10}, 0.0, 0.01, seed=0)  # round(0.2) = 0
    assert set(assignment.values()) == {"train"}


def test_groups_without_examples_go_to_train_and_do_not_count() -> None:
    groups = {"empty1": 0, "empty2": 0, "a": 5, "b": 5}
    assignment = assign_splits(groups, 0.1, 0.1, seed=0)
    assert assignment["empty1"] == assignment["empty2"] == "train"
    summary = summarize(groups, assignment, 0.1, 0.1)
    assert summary.groups["train"] == 3
    assert "only 2 documents with examples" in summary.warnings[0]


def test_chunk_split_warnings_do_not_suggest_chunks() -> None:
    groups = {"chunk-a": 5}
    summary = summarize(groups, assign_splits(groups, 0.0, 0.2, seed=0), 0.0, 0.2, by="chunk")
    assert summary.warnings == ("test: 0 groups — only 1 chunk with examples; add data or set the fraction to 0",)


def test_achieved_fraction_far_from_target_is_warned() -> None:
    groups = {"big": 100, "s1": 1, "s2": 1, "s3": 1}
    summary = summarize(groups, {"big": "test", "s1": "val", "s2": "train", "s3": "train"}, 0.1, 0.1)
    assert summary.warnings == (
        "val: 1.0% of examples (1 of 103), asked 10.0% — documents are assigned whole; "
        "more, smaller documents get closer",
        "test: 97.1% of examples (100 of 103), asked 10.0% — documents are assigned whole; "
        "more, smaller documents get closer",
    )


def test_within_half_the_target_is_not_warned() -> None:
    groups = {"a": 14, "b": 86}  # 14% for a 10% target: 40% off, relative
    assert summarize(groups, {"a": "test", "b": "train"}, 0.0, 0.1).warnings == ()


def test_train_without_examples_is_warned() -> None:
    summary = summarize({"a": 5, "b": 0}, {"a": "test", "b": "train"}, 0.0, 0.5)
    assert summary.warnings[-1] == "train: 0 examples — every group went to val or test"


def test_summary_needs_a_split_for_every_group() -> None:
    with pytest.raises(ValueError, match="group 'b' has no split"):
        summarize({"a": 5, "b": 5}, {"a": "train"}, 0.1, 0.1)


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (0.1, -0.1), (0.5, 0.5), (0.7, 0.4)])
def test_impossible_fractions_are_errors(val: float, test: float) -> None:
    with pytest.raises(ValueError, match="val \\+ test < 1"):
        assign_splits(MANY, val, test, seed=0)


def test_negative_counts_are_errors() -> None:
    with pytest.raises(ValueError, match="negative example count for group 'a'"):
        assign_splits({"a": -1}, 0.1, 0.1, seed=0)
