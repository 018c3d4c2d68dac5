"""Dataset sources: SQuAD JSON and JSON Lines files -> validated QA examples, every item left out
named by its place in the file.

Formats:
    squad: ``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
    "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}`` (SQuAD 1.1 and 2.0).
    jsonl: one object per line with an optional ``id``, in one of three shapes, told apart by keys:
      - extractive: ``question``, ``context``, ``answers``; ``answers`` is a list of strings, a list
        of ``{"text", "answer_start"}``, or the columns that Hugging Face ``datasets`` writes for
        SQuAD (``{"text": [...], "answer_start": [...]}``).
      - multiple choice (has ``choices`` or ``options``): ``question``, ``choices``: ``[str, ...]``
        or ``{"A": str, ...}``, ``answer``: a 0-based index, a label (``"B"``, any case; for an
        object, a key, which an integer answer also names) or the choice's text, and an optional
        ``context``.
      - fill in the blank (``answer`` without ``answers``): ``question`` (or ``text`` or
        ``sentence``) holding one blank (``___``, 3 or more underscores, ``[BLANK]`` or
        ``<blank>``, any case), ``answer``: the filler, and an optional ``context``.

Policies, decided here once:
    * A start must point at its text: ``context[start:start + len(text)] == text``. A wrong start is
      repaired when the text occurs exactly once in the context (the original is kept in
      ``Answer.repaired_from``, so repairs can be counted and audited); when it occurs more than
      once the intended occurrence cannot be told, and the answer is left out.
    * A bare-string answer has no start: it is placed at its first occurrence (``context.find``),
      the usual convention of extractive-QA preprocessing; which occurrence was meant is unknowable.
    * Matching is exact (case, whitespace, Unicode form): a label is always text the context holds.
    * SQuAD 2.0 unanswerable questions (``is_impossible: true``) are left out with the reason
      ``UNANSWERABLE``: ``QAExample`` has no "no answer" form, and neither synthesis nor span
      training here learns to abstain. They are reported like every other item left out.
    * An example keeps its valid answers; each invalid one is reported on its own, and an example
      with none left is left out. A repeated id is left out too: ids key provenance and splits.
    * Multiple choice becomes plain QA: the answer is the chosen option's text and the question
      is kept without its options, because the student learns to answer, not to pick. An answer
      that is a label of one choice and the text of another (``"B"`` among ``["B", "C"]``) is
      left out: which is meant cannot be told. A bad index or label, an answer among no choice,
      and empty choices leave the item out too.
    * Fill in the blank becomes ``"Fill in the blank: <sentence>"`` with the blank written ``___``
      whatever the marker was, so one form is learned; the answer is the filler. An item without
      exactly one blank is left out: with two, one answer cannot fill them.
    * Multiple-choice and fill-in-the-blank items may be closed-book: a missing or blank context
      reads as ``""``. Their answers are not spans: ``Answer.start`` is the first exact occurrence
      of the answer in the context when there is one, else None. The strict span policies above
      apply to extractive answers only, unchanged.
    * Whole-file problems (not UTF-8, empty, not JSON, not SQuAD-shaped) raise ``SourceError``.
      The file is read whole: JSON needs it, and UTF-8 is checked before any item is trusted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.runtime.sources.files import read_source
from distill.runtime.sources.records import Answer, QAExample, Skipped, SourceError

UNANSWERABLE = "unanswerable (SQuAD 2.0)"
_QUOTE_CHARS = 60  # longer texts are cut in reasons: a reason is one line of a report
_BLANK = re.compile(r"_{3,}|\[blank\]|<blank>", re.IGNORECASE)  # 3+: "__init__"-like "__" is no blank
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # labels of list choices; a 27th choice has no letter
# json raises RecursionError past Python's recursion limit (1,000 frames by default); no QA
# dataset nests deeper than a handful of levels, so that is a broken or hostile file.
_TOO_DEEP = "invalid JSON: nested deeper than the JSON reader can follow (about 1,000 levels)"


class _Invalid(Exception):
    """One item's problem; becomes a ``Skipped`` with the item's location."""


@dataclass(frozen=True)
class _Origin:
    """The file the items come from, and the ids seen so far in it (id -> location)."""

    shown: str
    sha256: str
    seen: dict[str, str]


def read_dataset(path: Path, shown: str, sha256: str, fmt: str) -> Iterator[QAExample | Skipped]:
    """Read a dataset file into QA examples, and a ``Skipped`` for every item left out.

    Args:
        path: the file.
        shown: the file as reports show it (relative to the Distillfile's folder).
        sha256: of the file's bytes.
        fmt: ``squad``, ``jsonl``, or ``auto`` (``.jsonl`` -> jsonl, ``.json`` -> squad).

    Returns:
        Examples and skipped items, in file order.

    Raises:
        SourceError: at once (not on iteration) when the file as a whole is unusable: unknown
            extension under ``auto``, not UTF-8, empty, invalid JSON (with line and column), not
            shaped like SQuAD, or JSON Lines with no parseable line.
    """
    kind = _format(path, shown, fmt)
    text = _read_text(path, shown)
    origin = _Origin(shown, sha256, {})
    if kind == "squad":
        return _squad_items(_squad_articles(text, shown), origin)
    return _jsonl_items(_jsonl_lines(text, shown), origin)


def _format(path: Path, shown: str, fmt: str) -> str:
    if fmt in ("squad", "jsonl"):
        return fmt
    if fmt != "auto":
        raise ValueError(f"unknown dataset format {fmt!r}")
    by_suffix = {".jsonl": "jsonl", ".json": "squad"}
    suffix = path.suffix.lower()
    if suffix not in by_suffix:
        raise SourceError(shown, f"cannot tell the dataset format from the extension {suffix!r}; "
                                 "set format: squad or format: jsonl")
    return by_suffix[suffix]


def _read_text(path: Path, shown: str) -> str:
    data = read_source(path, shown)
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is tolerated and dropped
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(shown, f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                                 f"(line {line}) cannot be decoded") from None
    if not text.strip():
        raise SourceError(shown, "empty file")
    return text


def _squad_articles(text: str, shown: str) -> list[Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(shown, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise SourceError(shown, _TOO_DEEP) from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        got = "an object without a 'data' list" if isinstance(document, dict) else _kind(document)
        raise SourceError(shown, f"not SQuAD: expected an object with a 'data' list, got {got} "
                                 "(one example per line is format: jsonl)")
    return document["data"]


def _squad_items(articles: list[Any], origin: _Origin) -> Iterator[QAExample | Skipped]:
    for a, article in enumerate(articles):
        where = f"data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            yield _skip(origin, where, "expected an object with a 'paragraphs' list")
            continue
        for p, paragraph in enumerate(article["paragraphs"]):
            where = f"data[{a}].paragraphs[{p}]"
            try:
                if not isinstance(paragraph, dict):
                    raise _Invalid(f"expected an object, got {_kind(paragraph)}")
                context = _string(paragraph.get("context"), "context")
                qas = _list(paragraph, "qas")
            except _Invalid as problem:
                yield _skip(origin, where, str(problem))
                continue
            for q, qa in enumerate(qas):
                yield from _example(qa, context, f"{where}.qas[{q}]", f"{where}.qas[{q}]", origin)


def _jsonl_lines(text: str, shown: str) -> list[tuple[int, Any, str | None]]:
    """(line number, value, syntax error) for every non-blank line. Lines are split at "\\n" only:
    JSON strings may hold U+2028 and other characters ``str.splitlines`` would break at."""
    lines: list[tuple[int, Any, str | None]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            lines.append((number, json.loads(line), None))
        except json.JSONDecodeError as exc:
            lines.append((number, None, f"invalid JSON at column {exc.colno}: {exc.msg}"))
        except RecursionError:
            lines.append((number, None, _TOO_DEEP))
    if all(error is not None for _, _, error in lines):
        number, _, error = lines[0]
        raise SourceError(shown, f"not JSON Lines: no line parses (line {number}: {error}); "
                                 "a single JSON document is format: squad")
    return lines


def _jsonl_items(lines: list[tuple[int, Any, str | None]], origin: _Origin) -> Iterator[QAExample | Skipped]:
    for number, item, error in lines:
        where = f"line {number}"
        if error is not None:
            yield _skip(origin, where, error)
        elif not isinstance(item, dict):
            yield _skip(origin, where, f"expected a JSON object, got {_kind(item)}")
        elif "choices" in item or "options" in item:
            yield from _converted(item, where, str(number), origin, _multiple_choice)
        elif "answer" in item and "answers" not in item:
            yield from _converted(item, where, str(number), origin, _fill_in_the_blank)
        else:
            yield from _example(item, item.get("context"), where, str(number), origin)


def _example(item: Any, context: Any, where: str, fallback_id: str,
             origin: _Origin) -> Iterator[QAExample | Skipped]:
    """Validate one question: a ``QAExample`` with its valid answers and a ``Skipped`` per invalid
    answer, or one ``Skipped`` for the whole item."""
    try:
        if not isinstance(item, dict):
            raise _Invalid(f"expected an object, got {_kind(item)}")
        context = _string(context, "context")
        question = _string(item.get("question"), "question").strip()
        example_id = _id(item, f"{origin.shown}:{fallback_id}", origin.seen)
        if _flag(item, "is_impossible"):
            raise _Invalid(UNANSWERABLE)
        raw = _raw_answers(item)
    except _Invalid as problem:
        yield _skip(origin, where, str(problem))
        return
    answers: list[Answer] = []
    problems: list[str] = []
    for i, answer in enumerate(raw):
        try:
            answers.append(_answer(answer, context))
        except _Invalid as problem:
            problems.append(f"answers[{i}]: {problem}")
    if not answers:
        yield _skip(origin, where, "; ".join(problems) if problems else "no answers")
        return
    origin.seen[example_id] = where
    yield from (_skip(origin, where, problem) for problem in problems)
    yield QAExample(example_id, question, context, tuple(answers), origin.shown, origin.sha256, where)


def _converted(item: dict[str, Any], where: str, fallback_id: str, origin: _Origin,
               convert: Callable[[dict[str, Any]], tuple[str, str]]) -> Iterator[QAExample | Skipped]:
    """A multiple-choice or fill-in-the-blank item as one QA example (``convert`` gives its
    question and answer), or one ``Skipped``."""
    try:
        context = _optional_context(item.get("context"))
        question, text = convert(item)
        example_id = _id(item, f"{origin.shown}:{fallback_id}", origin.seen)
    except _Invalid as problem:
        yield _skip(origin, where, str(problem))
        return
    origin.seen[example_id] = where
    first = context.find(text) if context else -1
    answer = Answer(text, first if first >= 0 else None)
    yield QAExample(example_id, question, context, (answer,), origin.shown, origin.sha256, where)


def _optional_context(value: Any) -> str:
    """A closed-book item's context: absent, null or blank reads as ""."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    return _string(value, "context")


def _multiple_choice(item: dict[str, Any]) -> tuple[str, str]:
    question = _string(item.get("question"), "question").strip()
    if "choices" in item and "options" in item:
        raise _Invalid("both 'choices' and 'options': give one")
    key = "choices" if "choices" in item else "options"
    labels, texts = _choices(item[key], key)
    return question, texts[_chosen(item.get("answer"), labels, texts, isinstance(item[key], list))]


def _choices(value: Any, key: str) -> tuple[list[str], list[str]]:
    """(labels, texts) of the choices: letters for a list, the keys for an object."""
    if isinstance(value, list):
        texts = [_string(text, f"{key}[{i}]").strip() for i, text in enumerate(value)]
        labels = [_LETTERS[i] if i < len(_LETTERS) else "" for i in range(len(texts))]
    elif isinstance(value, dict):
        labels = [label.strip() for label in value]
        texts = [_string(text, f"{key}.{label}").strip() for label, text in value.items()]
    else:
        raise _Invalid(f"'{key}' must be a list or an object, got {_kind(value)}")
    if not texts:
        raise _Invalid(f"'{key}' is empty")
    return labels, texts


def _chosen(answer: Any, labels: list[str], texts: list[str], listed: bool) -> int:
    """The index of the choice ``answer`` names (see the module's policies). An integer is an
    index into a list of choices, and a label (key) of an object of choices."""
    if answer is None:
        raise _Invalid("missing 'answer'")
    if isinstance(answer, bool) or not isinstance(answer, (int, str)):
        raise _Invalid(f"'answer' must be a choice's index, label or text, got {_kind(answer)}")
    if isinstance(answer, int) and listed:
        if not 0 <= answer < len(texts):
            raise _Invalid(f"'answer' index {answer} is out of range for {len(texts)} choices (0 to {len(texts) - 1})")
        return answer
    wanted = str(answer).strip()
    if not wanted:
        raise _Invalid("'answer' is empty")
    as_label = [i for i, label in enumerate(labels) if label and label.casefold() == wanted.casefold()]
    as_text = [i for i, text in enumerate(texts) if text == wanted]
    if as_label and as_text and as_label[0] not in as_text:
        raise _Invalid(f"'answer' {_quote(wanted)} is the label of choice {labels[as_label[0]]} and the text of "
                       f"choice {labels[as_text[0]] or as_text[0]}: cannot tell which is meant")
    if as_label or as_text:
        return (as_label or as_text)[0]
    if listed and len(wanted) == 1 and wanted.upper() in _LETTERS:
        raise _Invalid(f"'answer' letter {wanted!r} is out of range for {len(texts)} choices "
                       f"(A to {labels[min(len(texts), len(_LETTERS)) - 1]})")
    raise _Invalid(f"'answer' {_quote(wanted)} is not among the choices")


def _fill_in_the_blank(item: dict[str, Any]) -> tuple[str, str]:
    name = next((name for name in ("question", "text", "sentence") if item.get(name) is not None), None)
    if name is None:
        raise _Invalid("missing 'question' (or 'text' or 'sentence')")
    sentence = _string(item[name], name).strip()
    blanks = len(_BLANK.findall(sentence))
    if blanks != 1:
        found = "no blank" if blanks == 0 else f"{blanks} blanks"
        raise _Invalid(f"'{name}' has {found} (___, [BLANK] or <blank>); an item with 'answer' and no "
                       "'choices' is fill in the blank, which needs exactly one")
    answer = _string(item.get("answer"), "answer").strip()
    return f"Fill in the blank: {_BLANK.sub('___', sentence)}", answer


def _raw_answers(item: dict[str, Any]) -> list[Any]:
    """The answers as given: strings or ``{"text", "answer_start"}`` objects."""
    if "answers" not in item:
        raise _Invalid("missing 'answers'")
    answers = item["answers"]
    if isinstance(answers, dict):  # Hugging Face columns: {"text": [...], "answer_start": [...]}
        texts, starts = _list(answers, "text"), _list(answers, "answer_start")
        if len(texts) != len(starts):
            raise _Invalid(f"answers.text and answers.answer_start differ in length "
                           f"({len(texts)} vs {len(starts)})")
        return [{"text": t, "answer_start": s} for t, s in zip(texts, starts, strict=True)]
    if not isinstance(answers, list):
        raise _Invalid(f"'answers' must be a list, got {_kind(answers)}")
    return answers


def _answer(raw: Any, context: str) -> Answer:
    """The answer, placed and checked against the context (see the module's policies)."""
    if isinstance(raw, str):
        text = _string(raw, "answer")
        first = context.find(text)
        if first < 0:
            raise _Invalid(f"{_quote(text)} does not occur in the context")
        return Answer(text, first)
    if not isinstance(raw, dict):
        raise _Invalid(f"expected an object or a string, got {_kind(raw)}")
    text, start = _string(raw.get("text"), "text"), _start(raw)
    if context.startswith(text, start):
        return Answer(text, start)
    first = context.find(text)
    if first < 0:
        raise _Invalid(f"{_quote(text)} does not occur in the context")
    if context.find(text, first + 1) >= 0:
        raise _Invalid(f"answer_start {start} does not point at {_quote(text)}, which occurs more "
                       "than once in the context: cannot tell which is meant")
    return Answer(text, first, repaired_from=start)


def _start(answer: dict[str, Any]) -> int:
    if "answer_start" not in answer:
        raise _Invalid("missing 'answer_start'")
    value = answer["answer_start"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(f"'answer_start' must be a non-negative integer, got {value!r}")
    return value


def _id(item: dict[str, Any], fallback: str, seen: dict[str, str]) -> str:
    if item.get("id") is None:
        return fallback
    value = item["id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Invalid(f"'id' must be a string or an integer, got {_kind(value)}")
    value = str(value)
    if value in seen:
        raise _Invalid(f"duplicate id {value!r} (first at {seen[value]})")
    return value


def _string(value: Any, name: str) -> str:
    """A non-blank string field; ``None`` (absent or null) reads as missing."""
    if value is None:
        raise _Invalid(f"missing '{name}'")
    if not isinstance(value, str):
        raise _Invalid(f"'{name}' must be a string, got {_kind(value)}")
    if not value.strip():
        raise _Invalid(f"'{name}' is empty")
    _encodable(value, f"'{name}'")
    return value


def _encodable(value: str, what: str) -> None:
    """JSON escapes can smuggle in unpaired surrogates, which no UTF-8 output can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Invalid(f"{what} holds an unpaired surrogate at character {exc.start}") from None


def _list(item: dict[str, Any], key: str) -> list[Any]:
    if key not in item:
        raise _Invalid(f"missing '{key}'")
    if not isinstance(item[key], list):
        raise _Invalid(f"'{key}' must be a list, got {_kind(item[key])}")
    return item[key]


def _flag(item: dict[str, Any], key: str) -> bool:
    value = item.get(key, False)
    if not isinstance(value, bool):
        raise _Invalid(f"'{key}' must be true or false, got {value!r}")
    return value


def _skip(origin: _Origin, where: str, reason: str) -> Skipped:
    return Skipped(source=origin.shown, reason=reason, location=where, excluded=reason == UNANSWERABLE)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _quote(text: str) -> str:
    return repr(text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "...")
