"""Augmentation: the question dedup key, and seeded typo noise that never touches digits."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from distill.runtime.synthesis.augment import normalize_question, typo_noise

QUESTION = "How long does the pump run before the valve opens at 20 bar?"


# --- normalize_question --------------------------------------------------------------------------

@pytest.mark.parametrize("variant", [
    "How long does the pump run?",
    "how long does the pump run",
    "  HOW LONG   does the\tpump\nrun ?? ",
    "How long does the pump run\u2026",
    "\uff28ow long does the pump run?",  # full-width H
    "\u201cHow long does the pump run?\u201d",
    "How long, does the pump run!",
])
def test_variants_of_one_question_share_a_key(variant: str) -> None:
    assert normalize_question(variant) == "how long does the pump run"


def test_punctuation_inside_words_is_removed_and_dashes_split() -> None:
    assert normalize_question("What's the pump's rate?") == normalize_question("whats the pumps rate")
    assert normalize_question("Is the pump-house open?") == normalize_question("is the pump house open")
    assert normalize_question("on/off") == "on off"
    assert normalize_question("Straße?") == "strasse"


def test_different_questions_keep_different_keys() -> None:
    assert normalize_question("Is it 20 %?") != normalize_question("Is it 20 $?")  # symbols stay
    assert normalize_question("How long does the pump run?") != normalize_question("How long does the valve run?")
    assert normalize_question("") == ""


# --- typo_noise ----------------------------------------------------------------------------------

def test_rate_zero_is_the_identity() -> None:
    assert typo_noise(QUESTION, 0.0, "q1:0") == QUESTION


def test_same_seed_same_typos_other_seed_other_typos() -> None:
    noisy = typo_noise(QUESTION, 0.3, "q1:0")
    assert noisy != QUESTION
    assert typo_noise(QUESTION, 0.3, "q1:0") == noisy
    others = {typo_noise(QUESTION, 0.3, f"q1:{seed}") for seed in range(1, 6)}
    assert noisy not in others and len(others) > 1


def test_typos_are_the_same_in_another_process() -> None:
    # hash() is salted per process (PYTHONHASHSEED); the sha256 seed must not be.
    code = ("from distill.runtime.synthesis.augment import typo_noise; "
            f"print(typo_noise({QUESTION!r}, 0.3, 'q1:0'), end='')")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout
    assert other == typo_noise(QUESTION, 0.3, "q1:0")


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="abcxyz0123456789 .?\u00e9", max_size=60), rate=st.floats(0, 1), seed=st.text(max_size=8))
def test_digits_punctuation_and_spaces_are_never_touched(text: str, rate: float, seed: str) -> None:
    noisy = typo_noise(text, rate, seed)
    assert re.findall(r"[^a-z\u00e9]", noisy) == re.findall(r"[^a-z\u00e9]", text)


def test_numbers_survive_full_noise() -> None:
    noisy = typo_noise("Pump 20 runs 3.5 bar, code 7741.", 1.0, "s")
    assert re.findall(r"\d", noisy) == list("2035" + "7741")
    assert noisy.count(" ") == 6 and noisy.endswith(".") and "3.5" in noisy


def test_approximate_rate_on_long_text() -> None:
    # One-letter words: every typo on "k" changes its word ("" dropped, "kk", or a neighbour), and
    # no swap is possible, so changed words count typos exactly. 10,000 letters at rate 0.1: mean
    # 1,000, standard deviation sqrt(10,000 * 0.1 * 0.9) = 30; the bounds are about 3.3 sigma.
    words = typo_noise(" ".join("k" * 10_000), 0.1, "rate").split(" ")
    assert len(words) == 10_000
    assert 900 <= sum(word != "k" for word in words) <= 1100
    assert {"", "kk"} <= set(words) and set(words) - {"", "kk", "k"} <= set("jiolm")


def test_all_four_typos_occur_and_keep_case() -> None:
    # At rate 1 "A" always gets a typo; after anything but a swap, "b" gets its own (no swap
    # partner left: drop, double or a neighbour of b).
    b_typos = {"", "bb", "v", "g", "h", "n"}
    results = {typo_noise("Ab", 1.0, f"s{i}") for i in range(200)}
    assert "bA" in results  # swap, which consumes b
    assert results & b_typos  # A dropped
    assert results & {"AA" + typo for typo in b_typos}  # A doubled
    assert results & {a + typo for a in "QWSZ" for typo in b_typos}  # A replaced by a neighbour, still upper case
    assert results <= {"bA"} | b_typos | {a + typo for a in ("AA", "Q", "W", "S", "Z") for typo in b_typos}


def test_non_ascii_letters_get_typos_but_no_neighbour() -> None:
    outputs = {typo_noise("\u00e9", 1.0, f"s{i}") for i in range(50)}
    assert outputs == {"", "\u00e9\u00e9"}  # drop or double: no swap partner, no QWERTY neighbour


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_rate_outside_zero_one_is_an_error(rate: float) -> None:
    with pytest.raises(ValueError, match="typo rate must be in"):
        typo_noise(QUESTION, rate, "s")
