"""Focus sentences: which sentences of a chunk a qa request asks about.

Why: asked for n pairs about a whole chunk, a small teacher asks the same obvious question n times
(SmolLM2-135M at greedy wrote one pair three times in 4 of 10 CamlIDL chunks), and asked again it
repeats itself. Naming one sentence per question spreads the questions over the chunk, and a
top-up request (``stage._generate_batch``) can name sentences not asked about yet, so it is a new
question rather than the same reply. Sentences are cut by hand (a regular expression): the
tokenizers of nltk or spaCy would be a download or a model for a choice this coarse.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A sentence ends at ., ! or ? before whitespace and a capital, a digit or an opening bracket.
_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])")
_CODE = re.compile(r"[;{}|<>=]")  # a line holding these is code, a table row or a grammar rule
MIN_WORDS = 8  # shorter is a heading, a label or a table row: nothing to ask about
MAX_CHARS = 300  # longer is a table or code run together: quoted in a prompt it crowds the chunk
_MIN_LETTERS = 0.6  # of its characters: prose, not code, numbers or a grammar's symbols


def sentences(text: str) -> list[str]:
    """The chunk's prose sentences worth a question, in order, whitespace collapsed. Lines of
    code or tables end the paragraph before them, so a sentence never runs into one."""
    found = []
    for paragraph in _paragraphs(text):
        found += [s for s in _END.split(paragraph) if len(s.split()) >= MIN_WORDS and len(s) <= MAX_CHARS
                  and _letters(s) >= _MIN_LETTERS]
    return found


def _paragraphs(text: str) -> list[str]:
    """Runs of prose lines, each joined into one line; blank and non-prose lines separate them."""
    runs: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip() and not _CODE.search(line) and _letters(line.strip()) >= _MIN_LETTERS:
            runs[-1].append(line)
        elif runs[-1]:
            runs.append([])
    return [" ".join(" ".join(run).split()) for run in runs if run]


def _letters(text: str) -> float:
    return sum(c.isalpha() for c in text) / max(1, len(text))


def pick(candidates: Sequence[str], used: Sequence[str], k: int) -> list[str]:
    """Up to ``k`` of the sentences not in ``used``, spread evenly over them (the middle of each
    of k equal runs), so a chunk's questions cover its start, middle and end."""
    fresh = [s for s in candidates if s not in used]
    k = min(k, len(fresh))
    return [fresh[int((i + 0.5) * len(fresh) / k)] for i in range(k)]
