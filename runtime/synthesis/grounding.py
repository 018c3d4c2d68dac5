"""Is a teacher's answer grounded in its context? Two measures, one per kind of student.

``find_span`` gives extractive-QA students a character span of the context; ``support`` gives
generative students the share of the answer's content words the context holds. Both are pure and
deterministic; neither calls a model.
"""

from __future__ import annotations

import re
import unicodedata

# Typographic marks teachers and PDFs use where plain text has ASCII ones. NFKC keeps them
# (U+2019 is not a compatibility character), so they are mapped by hand, after NFKC: NFKC already
# turns U+2033 into two U+2032 (mapped here) and U+2011 into U+2010.
_ASCII_MARKS = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
})

# Function words that carry no fact: a 3-word answer "the pump" must not score 0.5 for "the".
# Kept small (~60 words) on purpose: negations ("not", "no") and number words ("one") stay
# content words, since dropping them would let "the valve does not open" match "the valve opens".
STOPWORDS = frozenset("""
a an the and or but if then so of in on at to for from by with without into onto over under about
as than that this these those it its is are was were be been being am do does did done has have had
having i you he she we they me him her us them my your his our their what which who whom whose
when where why how there here also just very can could will would shall should may might must
""".split())

_WORD = re.compile(r"\w+")


def find_span(answer: str, context: str) -> tuple[int, int] | None:
    """Where the answer sits in the context, as a character span [start, end).

    An exact match (the first occurrence) wins. Otherwise both sides are normalized (Unicode NFKC,
    casefold, whitespace runs to one space, typographic quotes and dashes to ASCII; the answer also
    loses its surrounding punctuation) and the first match is mapped back to offsets of the
    ORIGINAL context, so ``context[start:end]`` is the text a student is trained to point at.
    Matching is by substring, like ``str.find``: word boundaries are not checked.

    Args:
        answer: the answer text, as the teacher wrote it.
        context: the text the answer should come from.

    Returns:
        ``(start, end)`` with ``start < end``, or None when the answer is empty or absent.
    """
    if not answer.strip():
        return None
    exact = context.find(answer)
    if exact >= 0:
        return exact, exact + len(answer)
    needle = _strip_punctuation(_normalize(answer)[0])
    if not needle:
        return None
    haystack, starts, ends = _normalize(context)
    found = haystack.find(needle)
    if found < 0:
        return None
    return starts[found], ends[found + len(needle) - 1]


def support(answer: str, context: str) -> float:
    """Share of the answer's content words that occur among the context's words, in [0, 1].

    Words are ``\\w+`` tokens of the NFKC-normalized, casefolded text; content words are those not
    in ``STOPWORDS`` (numbers are kept: they are the facts most often invented). Each distinct
    content word counts once, so a repeated word cannot outweigh the rest.

    This is recall of answer unigrams: the question is "does the context back what the answer
    says", so precision (how much of a 500-token context the answer uses) means nothing. Unigrams
    rather than n-grams because a teacher rightly rephrases and reorders ("opens the valve" for
    "the valve is opened"); bigram overlap would punish that, while an invented fact almost always
    brings a word (a number, a name) the context lacks.

    Args:
        answer: the generated answer.
        context: the text it should be grounded in.

    Returns:
        The fraction of content words found; 0.0 when the answer has no content words, since an
        answer that states nothing is not grounded either.
    """
    wanted = {word for word in _words(answer) if word not in STOPWORDS}
    if not wanted:
        return 0.0
    return len(wanted & set(_words(context))) / len(wanted)


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _normalize(text: str) -> tuple[str, list[int], list[int]]:
    """The normalized text, and for each of its characters the original span it came from.

    Normalization changes lengths ("ﬁ" -> "fi", "ß" -> "ss", three spaces -> one), so offsets in the
    normalized text are not offsets in the original; the two maps (normalized index -> original
    start, original end) turn a normalized match back into the original span. Each base character
    is normalized together with its combining marks ("e" + U+0301 -> "é"), because NFKC composes
    across them and per-character normalization would leave the decomposed form unmatched.
    """
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for start, end in _clusters(text):
        piece = unicodedata.normalize("NFKC", text[start:end]).casefold().translate(_ASCII_MARKS)
        for char in piece:
            if char.isspace():
                if out and out[-1] == " ":
                    ends[-1] = end  # the run's one space stands for the whole run
                    continue
                char = " "
            out.append(char)
            starts.append(start)
            ends.append(end)
    return "".join(out), starts, ends


def _clusters(text: str) -> list[tuple[int, int]]:
    """Spans of a base character with the combining marks that follow it."""
    spans: list[tuple[int, int]] = []
    for i, char in enumerate(text):
        if spans and unicodedata.combining(char):
            spans[-1] = (spans[-1][0], i + 1)
        else:
            spans.append((i, i + 1))
    return spans


def _strip_punctuation(text: str) -> str:
    """Drop surrounding whitespace and punctuation (Unicode category P*): "“20 minutes.”" and
    "20 minutes" name the same span, while a "$" or "%" (symbols, not punctuation) stays."""
    start, end = 0, len(text)
    while start < end and _loose(text[start]):
        start += 1
    while end > start and _loose(text[end - 1]):
        end -= 1
    return text[start:end]


def _loose(char: str) -> bool:
    return char.isspace() or unicodedata.category(char).startswith("P")
