"""Question variants and their dedup key: pure, seeded, the same in every process.

``normalize_question`` is the key that tells two questions apart (or not) when deduplicating;
``typo_noise`` makes the misspelled variants a robustness augmentation trains on.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata

# QWERTY neighbours (same row and the rows above and below, touching keys): a typist's slip
# lands on an adjacent key, so a neighbour replacement looks like a real typo ("pimp" for
# "pump") where a uniformly random letter ("pzmp") would not.
_NEIGHBOURS = {
    "q": "wa", "w": "qeas", "e": "wrsd", "r": "etdf", "t": "ryfg", "y": "tugh", "u": "yihj",
    "i": "uojk", "o": "ipkl", "p": "ol", "a": "qwsz", "s": "awedxz", "d": "serfcx", "f": "drtgvc",
    "g": "ftyhbv", "h": "gyujnb", "j": "huikmn", "k": "jiolm", "l": "kop", "z": "asx",
    "x": "zsdc", "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm", "m": "njk",
}
_OPERATIONS = ("swap", "drop", "double", "replace")


def normalize_question(text: str) -> str:
    """The dedup key of a question: two questions with the same key are the same question.

    NFKC (full-width and ligature forms read as plain ones), casefold ("What" = "what", "ß" =
    "ss"), punctuation removed ("What's the rate?" = "whats the rate"), whitespace collapsed.
    Dashes and slashes become spaces rather than vanishing, so "pump-house" = "pump house" and
    "on/off" does not fuse into "onoff". Symbols ("%", "$", "°") are kept: "20 %" and "20 $" differ.
    """
    chars: list[str] = []
    for char in unicodedata.normalize("NFKC", text).casefold():
        category = unicodedata.category(char)
        if category == "Pd" or char == "/":
            chars.append(" ")
        elif not category.startswith("P"):
            chars.append(char)
    return " ".join("".join(chars).split())


def typo_noise(text: str, rate: float, seed: str) -> str:
    """The text with seeded typos, for robustness augmentation of questions.

    Each letter independently, with probability ``rate``, gets one of four typos chosen uniformly:
    swap with the next letter, drop, double, or replace by a QWERTY neighbour (ASCII letters only;
    case kept). Digits are never touched, since numbers carry the facts a question asks about; nor
    are punctuation and whitespace, so word boundaries and the question mark stay. A swap needs a
    letter next to it (swapping across a space or into a digit would break those rules) and a
    replacement needs a neighbour (none for "é"); when one is impossible another typo is drawn,
    so the typo rate stays ``rate`` per letter.

    Args:
        text: the text to corrupt.
        rate: probability per letter, in [0, 1]; 0 returns the text unchanged.
        seed: e.g. the example's id and the run's seed. Hashed with sha256, never ``hash()``,
            which is salted per process: the same seed gives the same typos on every machine.

    Returns:
        The noisy text.

    Raises:
        ValueError: when ``rate`` is outside [0, 1].
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"typo rate must be in [0, 1], got {rate}")
    rng = random.Random(hashlib.sha256(seed.encode("utf-8")).digest())
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        # str.isalpha: letters of every script; digits, punctuation and spaces pass through.
        if not char.isalpha() or rng.random() >= rate:
            out.append(char)
            i += 1
            continue
        following = text[i + 1] if i + 1 < len(text) else ""
        possible = [op for op in _OPERATIONS if _possible(op, char, following)]
        operation = rng.choice(possible)
        if operation == "swap":
            out += [following, char]
            i += 2  # the swapped letter has had its typo
            continue
        if operation == "double":
            out += [char, char]
        elif operation == "replace":
            neighbour = rng.choice(_NEIGHBOURS[char.lower()])
            out.append(neighbour.upper() if char.isupper() else neighbour)
        i += 1  # "drop" appends nothing
    return "".join(out)


def _possible(operation: str, char: str, following: str) -> bool:
    if operation == "swap":
        # Swapping equal letters ("ll") would change nothing and under-count the rate.
        return following.isalpha() and following != char
    if operation == "replace":
        return char.lower() in _NEIGHBOURS
    return True
