"""Is a teacher's pair usable and grounded in its context? Pure, deterministic checks; none calls a model.

``is_question`` says whether a question is one; ``find_span`` gives extractive-QA students a
character span of the context; ``support`` gives generative students the share of the answer's
content words the context holds, and ``judge_answer`` turns it into a verdict with a one-line reason.

The rules are English heuristics (question words, inflections, what an identifier looks like) and
were measured on a hand-labelled set of real teacher pairs (tests/fixtures/grounding,
``benchmarks/grounding.py``): of SmolLM2-135M-Instruct's 48 pairs (5 good), the old support rule
rejected 24 of the 43 bad ones and these rules 29 (9 statements posing as questions, 5 looping
answers, 4 with no content word, 1 restated question, 10 unsupported), keeping 4 of the 5 good
ones (the fifth, a loose paraphrase, scores 0.46). What they cannot see is an answer made of the
chunk's own words that says the wrong thing (most of the 14 bad pairs still accepted). Text in
other languages passes the question check only with a "?"
(or its full-width and Arabic forms) and is matched without inflections.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

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

# A question opens with one of these ("What is X" without its "?" is still a question)...
QUESTION_WORDS = frozenset("""
what how why which who whom whose when where whether is are was were am do does did can could will
would shall should may might must has have had
""".split())
# ...or is a request that opens with one of these verbs ("List the steps."). "Name of the file" or
# "List of options" is a noun phrase, not a request: a request verb followed by "of" does not count.
REQUEST_WORDS = frozenset("""
explain describe list name give state define summarize summarise compare identify tell show outline
find provide mention discuss write
""".split())
# "In which year ...", "For what purpose ...", "By how much ...": a preposition, then a question word.
_LEADING_PREPOSITIONS = frozenset("in on at to for from by with under of according".split())
_QUESTION_MARKS = ("?", "\uff1f", "\u061f")  # ASCII, full-width, Arabic
# "Question 2:", "Q:", "1." or "2)" before the question is a label, not its first word.
_LABEL = re.compile(r"^\s*(?:(?:q(?:uestion)?\s*\d*\s*[:.)-])|\d+\s*[.):-])\s*", re.IGNORECASE)

_WORD = re.compile(r"\w+")
# English clitics: "pump's" is "pump", "don't" is "do not"; left alone, "s" and "t" would be words.
_CLITIC = re.compile(r"n't\b|'(?:s|re|ll|ve|d|m)\b", re.IGNORECASE)
_VOWELS = frozenset("aeiouy")
# Question words that open a yes/no question ("Is the valve open?"); the rest ask what, how, ...
_AUXILIARIES = QUESTION_WORDS - frozenset("what how why which who whom whose when where whether".split())
_LOOP_WORDS = 5
_COPIED_WORDS = 6  # shorter runs ("The pump runs?") may be a question put as a statement
NOT_A_QUESTION = "question is not a question (no '?' and no question word or request verb first)"
COPIED_STATEMENT = "question is a sentence of the chunk with a '?' after it"


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


def is_question(text: str) -> bool:
    """Whether ``text`` asks something: it ends with a question mark, or (English) it opens with a
    question word (``QUESTION_WORDS``, possibly after a preposition: "In which ...", or after
    "According to ..., ") or with a request verb (``REQUEST_WORDS``: "Explain ...", "List ...").

    A statement such as "The distance between the two points." asks nothing: a student trained on
    it learns to answer sentences that are not questions.
    """
    stripped = _LABEL.sub("", text.strip(), count=1)
    words = _WORD.findall(_plain(stripped))
    if not any(word.isalpha() for word in words):
        return False
    return stripped.rstrip(" \t\n\"')").endswith(_QUESTION_MARKS) or _opens_question(stripped, words)


def _opens_question(stripped: str, words: list[str]) -> bool:
    """Whether the (label-free) text opens as a question or a request does."""
    if words[0] == "according" and "," in stripped:  # "According to the text, what ..."
        words = _WORD.findall(_plain(stripped.split(",", 1)[1])) or words
    if words[0] in _LEADING_PREPOSITIONS and len(words) > 1 and words[1] in QUESTION_WORDS:
        return True
    if words[0] in QUESTION_WORDS:
        return True
    return words[0] in REQUEST_WORDS and (len(words) == 1 or words[1] != "of")


def judge_question(question: str, context: str) -> str | None:
    """Why ``question`` asks nothing about ``context`` (``is_question``, ``copies_a_statement``),
    or None when it asks something."""
    if not is_question(question):
        return NOT_A_QUESTION
    return COPIED_STATEMENT if copies_a_statement(question, context) else None


def copies_a_statement(question: str, context: str) -> bool:
    """Whether ``question`` is a statement of the context with a question mark put after it: it
    does not open as a question, and without its mark it is a run of the context of at least
    ``_COPIED_WORDS`` words. A small teacher told to ask about a sentence writes the sentence
    and a "?" (SmolLM2 on the gnuplot manual: "The backslash must be the last character on each
    line. Strings may be set off ?"); it asks nothing. Questions the text itself asks ("How do I
    plot?") open as questions and are kept."""
    stripped = _LABEL.sub("", question.strip(), count=1).rstrip(" \t\n\"')" + "".join(_QUESTION_MARKS))
    words = _WORD.findall(_plain(stripped))
    return (len(words) >= _COPIED_WORDS and not _opens_question(stripped, words)
            and find_span(stripped, context) is not None)


def is_identifier(token: str) -> bool:
    """Whether a ``\\w+`` token (as written, case kept) is a name or a code rather than a word:
    snake_case or with digits (``size_is``, ``x11``, ``1998``), camelCase (``dblRight``, ``pA``), an
    all-capitals code of 2+ letters (``HRESULT``, ``IDL``), or a single letter (``x``).

    Copying one from the chunk is trivial, so it proves nothing about an answer; inventing one is
    a made-up fact all the same (see ``support``).
    """
    if len(token) == 1 or "_" in token or any(char.isdigit() for char in token):
        return True
    if any(a.islower() and b.isupper() for a, b in zip(token, token[1:], strict=False)):
        return True
    return token.isupper()


@dataclass(frozen=True)
class Support:
    """How much of an answer its context backs.

    Attributes:
        score: found words / counted words, in [0, 1]; 0.0 when nothing is counted.
        words: the answer's distinct ordinary content words (not stopwords, not identifiers).
        missing: the counted words the context lacks (ordinary words and identifiers), in answer order.
    """

    score: float
    words: tuple[str, ...]
    missing: tuple[str, ...]


def support(answer: str, context: str) -> float:
    """Share of the answer's content words that the context backs, in [0, 1] (see ``measure``)."""
    return measure(answer, context).score


def measure(answer: str, context: str) -> Support:
    """Which of the answer's content words the context holds.

    Words are ``\\w+`` tokens of the NFKC-normalized text (case kept to tell identifiers, then
    casefolded); content words are those not in ``STOPWORDS``, each distinct one counted once, so a
    repeated word cannot outweigh the rest. An ordinary word is found when the context has it in
    some light inflection (``_forms``: "opens" / "opened" / "opening", "entries" / "entry"), since a
    teacher rightly rephrases. An identifier or number (``is_identifier``) must occur exactly; one
    the context holds is NOT counted, neither found nor wanted, because copying it is trivial: the
    real teacher's "dblRight" scored 1.0 alone, and "pA, which is a light-colored pen" scored 0.5
    on "pA" and "pen" while "light" and "colored" were made up (1/3 once "pA" no longer counts).
    One the context lacks counts as missing: invented numbers and names are the commonest invented
    facts.

    This is recall of answer unigrams: the question is "does the context back what the answer
    says", so precision (how much of a 500-token context the answer uses) means nothing. Unigrams
    rather than n-grams because a teacher rightly rephrases and reorders ("opens the valve" for
    "the valve is opened"); bigram overlap would punish that, while an invented fact almost always
    brings a word (a number, a name, an attribute) the context lacks.

    Args:
        answer: the generated answer.
        context: the text it should be grounded in.

    Returns:
        The score (0.0 when nothing is counted: an answer that states nothing, or only names
        copied from the context, is not grounded either), the ordinary words and the missing ones.
    """
    tokens = _WORD.findall(_CLITIC.sub(_clitic, unicodedata.normalize("NFKC", answer).translate(_ASCII_MARKS)))
    have = set(_words(context))
    have_forms = {form for word in have for form in _forms(word)}
    words: dict[str, None] = {}
    missing: dict[str, None] = {}
    counted = 0
    for token in tokens:
        word = token.casefold()
        if word in STOPWORDS or word in words or word in missing:
            continue
        if is_identifier(token):
            if word not in have:
                missing[word] = None
                counted += 1
            continue
        words[word] = None
        counted += 1
        if not _forms(word) & have_forms:
            missing[word] = None
    if not counted:
        return Support(0.0, tuple(words), tuple(missing))
    return Support((counted - len(missing)) / counted, tuple(words), tuple(missing))


def judge_answer(answer: str, context: str, min_support: float, question: str = "") -> tuple[float, str | None]:
    """A generative student's answer: its support score, and why it is rejected (None if kept).

    Rejected, in this order, when it has no ordinary content word (empty, only stopwords, or only
    identifiers and numbers: "dblRight"); when it loops (``repeats``); when it only restates
    ``question`` (``restates``); or when its support is below ``min_support``. Reasons vary only
    in their numbers, so the data card counts alike reasons together.
    """
    found = measure(answer, context)
    if not found.words:
        if found.missing or any(is_identifier(t) for t in _WORD.findall(answer)):
            return 0.0, "answer has no content word beyond identifiers and numbers"
        return 0.0, "answer has no content word"
    if repeats(answer):
        return found.score, f"answer repeats itself (a run of {_LOOP_WORDS} words occurs twice)"
    if question and restates(answer, question):
        return found.score, "answer only restates the question"
    if found.score < min_support:
        return found.score, f"answer support {found.score:.2f} < min_support {min_support:g}"
    return found.score, None


def repeats(answer: str) -> bool:
    """Whether some run of ``_LOOP_WORDS`` words occurs twice in the answer: a teacher stuck in a
    loop ("a story about a story about ...", "The interface is defined in the IDL file, and the
    interface is defined in the IDL file"). Answers of a sentence or three rarely repeat five
    words in a row, and a loop also repeats true sentences, which support cannot see."""
    words = _words(answer)
    runs = [tuple(words[i:i + _LOOP_WORDS]) for i in range(len(words) - _LOOP_WORDS + 1)]
    return len(set(runs)) < len(runs)


def restates(answer: str, question: str) -> bool:
    """Whether every content word of the answer is in the question (inflections match): "What is
    the IDL pointer type?" -> "Yes, the type of IDL pointer is IDL pointer." says nothing. A
    "yes" or "no" is news only to a yes/no question (one opening with an auxiliary verb, "Is ..."),
    and a name or number the question lacks is news ("Which variable sets the shell?" ->
    "COMSPEC sets the shell.")."""
    asked = _words(_LABEL.sub("", question.strip(), count=1))
    asked_forms = {form for word in asked for form in _forms(word)}
    yes_no = bool(asked) and asked[0] in _AUXILIARIES
    for word in _words(answer):
        if word in STOPWORDS or (word in ("yes", "no") and not yes_no):
            continue
        if not _forms(word) & asked_forms:
            return False
    return True


def _forms(word: str) -> set[str]:
    """The word and its bases without one English inflection (-s, -es, -ies, -ed, -ied, -ing), the
    base with an "e" restored ("used" -> "use") and undoubled ("running" -> "run"). Two words match
    when their forms meet. A base needs a vowel and 3+ letters (2 with the "e" restored), so
    "used" never becomes "us" and "string" never "str"."""
    forms = {word}
    if len(word) < 4 or not word.isalpha():
        return forms
    if word.endswith(("ies", "ied")):
        forms.add(word[:-3] + "y")
    for suffix in ("ing", "ed", "es", "s"):
        if not word.endswith(suffix) or (suffix == "s" and word.endswith(("ss", "us", "is"))):
            continue
        base = word[:-len(suffix)]
        if not _VOWELS & set(base) or len(base) < 2:
            continue
        forms.add(base + "e")  # "used" -> "use", "making" -> "make"
        if len(base) >= 3:
            forms.add(base)
            if base[-1] == base[-2] and base[-1] not in "lsz":
                forms.add(base[:-1])  # "running" -> "run", "stopped" -> "stop"
    return forms


def _clitic(match: re.Match[str]) -> str:
    return " not" if match.group(0).lower() == "n't" else ""


def _plain(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _words(text: str) -> list[str]:
    return _WORD.findall(_plain(text))


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
