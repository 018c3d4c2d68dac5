"""Question-answer pairs written as prose, the way small instruct teachers write them when they
are not constrained (``data.synthesis.decoding: free``) and ignore the JSON asked for.

Formats read, each seen from SmolLM2-135M-Instruct on real manuals (issue 19):

    Question: What is X?            1. Question: What is X?        Q1: What is X?
    Answer: X is Y.                    Answer: X is Y.             A1: X is Y.

    **Question 1:** What is X?      1. What is X?
    **Answer:** X is Y.                Answer: X is Y.

A question opens with a label (``Question``, ``Q``, optionally numbered and in bold), or is a
line ending in "?" right before an answer label. An answer opens with its label and runs until
a blank line, the next question or the next numbered line. Pure and deterministic, never raises;
content is never guessed at: a question without an answer label after it yields nothing.
"""

from __future__ import annotations

import re

# "1." / "2)" / "-" / "*" list markers, then optional bold, the label, an optional number, a colon
# (for a bare Q or A a colon is required: "A." opens ordinary sentences).
_LIST = r"(?:\d+[.)]|[-*•])?\s*"
_BOLD = r"(?:\*\*|__)?"
_QUESTION = re.compile(rf"^\s*{_LIST}{_BOLD}(?:question\s*\d*\s*[:.)-]|q\s*\d*\s*:){_BOLD}\s*(.*)$", re.I)
_ANSWER = re.compile(rf"^\s*{_LIST}{_BOLD}(?:answer\s*\d*\s*[:.)-]|a\s*\d*\s*:){_BOLD}\s*(.*)$", re.I)
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")


def prose_pairs(text: str) -> list[dict[str, str]]:
    """The labelled question-answer pairs of ``text``, in order (empty when there are none)."""
    lines = text.splitlines()
    pairs: list[dict[str, str]] = []
    question: list[str] | None = None
    answer: list[str] | None = None

    def close() -> None:
        nonlocal question, answer
        if question is not None and answer is not None:
            q, a = _clean(" ".join(question)), _clean(" ".join(answer))
            if q and a:
                pairs.append({"question": q, "answer": a})
        question = answer = None

    for index, line in enumerate(lines):
        if (found := _QUESTION.match(line)) is not None:
            close()
            question = [found.group(1)]
        elif (found := _ANSWER.match(line)) is not None:
            if question is not None and answer is None:
                answer = [found.group(1)]
            else:  # an answer with no question before it, or a second one: not a pair
                close()
        elif _unlabelled_question(line, lines[index + 1:]):
            close()
            question = [_NUMBERED.sub(r"\1", line)]
        elif not line.strip() or _NUMBERED.match(line):
            if answer is not None:
                close()
        elif answer is not None:
            answer.append(line)
        elif question is not None:
            question.append(line)
    close()
    return pairs


def _unlabelled_question(line: str, rest: list[str]) -> bool:
    """A line ending in "?" whose next non-blank line opens an answer."""
    if not line.rstrip().rstrip("*_").endswith("?"):
        return False
    following = next((later for later in rest if later.strip()), "")
    return _ANSWER.match(following) is not None


def _clean(text: str) -> str:
    """One line of text without markdown bold and surrounding quotes."""
    text = " ".join(text.replace("**", "").replace("__", "").split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text
