"""Train/val/test assignment by group, never by row: every example of a document (or chunk group)
lands in one split, so paraphrases and augmented variants of one pair never straddle splits and
nothing the test set asks about was seen in training.

The assignment is a pure function of (group keys, their sizes, fractions, seed): keys are ordered
by sha256 of ``"<seed>:<key>"``, so the result does not depend on the order groups were found in,
and adding a document moves no other document between splits except through the fill targets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from distill.compiler.records.examples import SplitName

SPLITS: tuple[SplitName, ...] = ("train", "val", "test")
_MIN_GROUPS = 3  # below 3 groups, guaranteeing test and val one each would leave train nothing
_TOLERANCE = 0.5  # achieved fraction more than 50% off the target (relative) is worth a warning


@dataclass(frozen=True)
class SplitSummary:
    """What an assignment achieved, for the stage's report.

    Attributes:
        groups: number of groups per split (groups without examples included, under train).
        examples: number of examples per split.
        warnings: one line each, for the report and the console.
    """

    groups: dict[SplitName, int]
    examples: dict[SplitName, int]
    warnings: tuple[str, ...]


def assign_splits(groups: Mapping[str, int], val: float, test: float, seed: int) -> dict[str, SplitName]:
    """Assign each group, whole, to train, val or test.

    Groups with examples are ordered by sha256(f"{seed}:{key}"); test takes groups in that order
    until its example count reaches round(test * total), then val likewise from the rest, and
    train gets what remains. Groups are indivisible, so a large group can overshoot a target:
    ``summarize`` reports it. When test (or val) > 0 and there are at least 3 groups with examples,
    it gets at least one group even if its rounded target is 0 examples. Train always keeps at
    least one group with examples when any exist. Groups with 0 examples go to train.

    Args:
        groups: group key (a document, or a chunk group) -> number of examples.
        val: fraction of examples wanted in val, >= 0.
        test: fraction of examples wanted in test, >= 0; val + test < 1.
        seed: the run's seed.

    Returns:
        Group key -> split, for every key of ``groups``, in sorted key order.

    Raises:
        ValueError: for negative fractions, val + test >= 1, or a negative count.
    """
    _check(groups, val, test)
    order = sorted((key for key, count in groups.items() if count > 0), key=lambda key: (_rank(seed, key), key))
    total = sum(groups[key] for key in order)
    assignment: dict[str, SplitName] = {key: "train" for key in groups}
    remaining = order
    held_out: tuple[tuple[SplitName, float], ...] = (("test", test), ("val", val))
    for name, fraction in held_out:
        taken, remaining = _fill(remaining, groups, round(fraction * total),
                                 fraction > 0 and len(order) >= _MIN_GROUPS)
        assignment.update({key: name for key in taken})
    return dict(sorted(assignment.items()))


def _fill(order: list[str], groups: Mapping[str, int], target: int, at_least_one: bool) -> tuple[list[str], list[str]]:
    """Take groups from the front of ``order`` until their examples reach ``target``; the last
    group is never taken, it is train's."""
    taken: list[str] = []
    count = 0
    while len(taken) < len(order) - 1 and (count < target or (at_least_one and not taken)):
        count += groups[order[len(taken)]]
        taken.append(order[len(taken)])
    return taken, order[len(taken):]


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def _check(groups: Mapping[str, int], val: float, test: float) -> None:
    if val < 0 or test < 0 or val + test >= 1:
        raise ValueError(f"split fractions must be >= 0 with val + test < 1, got val {val} and test {test}")
    negative = sorted(key for key, count in groups.items() if count < 0)
    if negative:
        raise ValueError(f"negative example count for group {negative[0]!r}")


def summarize(groups: Mapping[str, int], assignment: Mapping[str, SplitName], val: float, test: float,
              *, by: str = "document") -> SplitSummary:
    """Count groups and examples per split, and warn where the split misses what was asked.

    Warnings: a split asked for (val or test > 0) that got no group; a split whose share of the
    examples is more than 50% off its target, relative (10% asked, under 5% or over 15% got),
    which happens when groups are few or uneven; train with no examples.

    Args:
        groups: group key -> number of examples, as given to ``assign_splits``.
        assignment: group key -> split, for every key of ``groups``.
        val, test: the fractions asked for.
        by: the unit of ``groups`` (``split.by``): ``document`` warnings suggest splitting by chunk.

    Raises:
        ValueError: when a group has no split.
    """
    missing = sorted(set(groups) - set(assignment))
    if missing:
        raise ValueError(f"group {missing[0]!r} has no split")
    counts: dict[SplitName, int] = {name: 0 for name in SPLITS}
    examples: dict[SplitName, int] = {name: 0 for name in SPLITS}
    for key, size in groups.items():
        counts[assignment[key]] += 1
        examples[assignment[key]] += size
    total = sum(examples.values())
    held_out: tuple[tuple[SplitName, float], ...] = (("val", val), ("test", test))
    warnings = [line for name, fraction in held_out
                if (line := _warning(name, fraction, examples[name], total, groups, by))]
    if total and not examples["train"]:
        warnings.append("train: 0 examples — every group went to val or test")
    return SplitSummary(counts, examples, tuple(warnings))


def _warning(name: str, fraction: float, got: int, total: int, groups: Mapping[str, int], by: str) -> str | None:
    if fraction <= 0 or total == 0:
        return None
    if got == 0:
        with_examples = sum(size > 0 for size in groups.values())
        hint = "use split.by: chunk" if by == "document" else "add data or set the fraction to 0"
        units = by if with_examples == 1 else f"{by}s"
        return f"{name}: 0 groups — only {with_examples} {units} with examples; {hint}"
    achieved = got / total
    if abs(achieved - fraction) / fraction > _TOLERANCE:
        return (f"{name}: {achieved:.1%} of examples ({got} of {total}), asked {fraction:.1%} — "
                f"{by}s are assigned whole; more, smaller {by}s get closer")
    return None
