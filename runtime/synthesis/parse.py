"""One raw teacher response (free text) -> the valid items, every rejected item with its reason.

Pure and deterministic: stdlib + ``jsonschema``, never raises on any text (a tiny random model
emits random tokens, and the stage must not crash on them).

Finding the JSON. Candidates are the ``[``/``{`` positions of each fenced block (in order), then
of the whole text; the first that decodes (``raw_decode``) into items wins. Items come from an
array holding objects, an object holding one such array under any key, or a single item object
(followed, JSON-lines style, by more item objects separated only by whitespace or commas). When
a candidate that looks like JSON fails, it is decoded again after a few deterministic repairs
(see ``_repair``); if that fails too, every complete item before the break is salvaged and the
broken tail becomes one ``Rejected``. Content is never guessed at.

Validation. Each item is stripped (strings only) and checked against ``item_schema``; errors
become one-line reasons ``item 3: answer: must not be empty`` (items 1-based, paths like
``messages[1].role`` 0-based as in JSON). Decisions:

- Unknown keys are ignored and dropped from the normalized item: teachers add "id" or
  "difficulty", and rejecting a good pair for that would waste a teacher call.
- A conversation longer than ``turns`` exchanges is truncated to its first ``turns`` exchanges:
  a prefix of a dialogue is still a coherent dialogue (later turns depend on earlier ones, never
  the reverse), ``turns`` is a length budget rather than a correctness rule, and every kept
  message is verbatim teacher output. A conversation ending with the user is rejected instead:
  the answer the last question waits for is missing.
- A repaired container (trailing comma, single quotes) is not "salvaged": its full content was
  read, so ``clean`` stays True and no repair prompt is needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator

Kind = Literal["qa", "conversation"]

MAX_QUESTION_CHARS = 1000
MAX_TEXT_CHARS = 4000  # answers, evidence, message contents, paraphrases
# Work bounds for garbage full of brackets, where trying every bracket is O(n^2): failed strict
# decodes (C speed, but "[[[[..." recurses ~1000 deep at each), and repairs (a Python loop over
# the rest of the text). Teachers' JSON is found at one of the first few brackets.
MAX_FAILED_CANDIDATES = 1000
MAX_REPAIR_ATTEMPTS = 8
MAX_DEPTH = 64  # item JSON nests at most ~5 deep; a repair stops beyond this
# strict=False accepts raw newlines and tabs inside strings: teachers write multi-line answers
# without escaping them, and the text is unambiguous.
_DECODER = json.JSONDecoder(strict=False)
# A fence opener with an optional language tag; an unclosed fence (cut off) runs to the end.
_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\r?\n(.*?)(?:```|\Z)", re.S)
_ITEM_KEYS = {"qa": ("question", "answer"), "conversation": ("messages",)}
_WRAPPER_KEYS = ("pairs", "qa", "qa_pairs", "questions", "items", "conversations", "data", "paraphrases")
_EXPECTED = {"qa": "a list of objects with 'question' and 'answer'",
             "conversation": "a list of objects with 'messages'", "strings": "a list of strings"}


@dataclass(frozen=True)
class Rejected:
    """One item that failed, or the broken tail of a container (``item`` None)."""

    reason: str
    item: Any = None


@dataclass(frozen=True)
class Parsed:
    """What one teacher response yielded."""

    items: tuple[dict[str, Any], ...]
    rejected: tuple[Rejected, ...]
    error: str | None
    salvaged: bool

    @property
    def problems(self) -> list[str]:
        """The whole-response error and every rejected reason: what a repair prompt tells the teacher."""
        return ([self.error] if self.error else []) + [r.reason for r in self.rejected]

    @property
    def clean(self) -> bool:
        """True when the response was read whole, nothing was rejected, and it held items."""
        return self.error is None and not self.rejected and not self.salvaged and bool(self.items)


def _text(max_chars: int, description: str) -> dict[str, Any]:
    # pattern \S: non-empty after stripping, stated in the schema itself.
    return {"type": "string", "minLength": 1, "maxLength": max_chars, "pattern": r"\S", "description": description}


def item_schema(kind: Kind, turns: int) -> dict[str, Any]:
    """The JSON Schema (2020-12) of one item.

    Args:
        kind: "qa" or "conversation".
        turns: the most user/assistant exchanges in a conversation (ignored for qa).

    Returns:
        The schema. Conversations must also end with an assistant message (checked in code:
        an even length is awkward to state in JSON Schema).

    Raises:
        ValueError: for an unknown kind or ``turns < 1``.
    """
    base = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}
    if kind == "qa":
        return {**base, "required": ["question", "answer"], "properties": {
            "question": _text(MAX_QUESTION_CHARS, "A question the text answers."),
            "answer": _text(MAX_TEXT_CHARS, "The answer, grounded in the text."),
            "evidence": {"type": ["string", "null"], "maxLength": MAX_TEXT_CHARS,
                         "description": "Optional: a quote from the text supporting the answer."}}}
    if kind != "conversation" or not isinstance(turns, int) or turns < 1:
        raise ValueError(f"item_schema: need kind 'qa' or 'conversation' and turns >= 1 (got {kind!r}, {turns!r})")
    roles = ["user", "assistant"] * turns  # alternation stated position by position
    messages = [{"type": "object", "required": ["role", "content"], "properties": {
        "role": {"const": role}, "content": _text(MAX_TEXT_CHARS, f"What the {role} says.")}} for role in roles]
    return {**base, "required": ["messages"], "properties": {"messages": {
        "type": "array", "minItems": 2, "maxItems": 2 * turns, "prefixItems": messages, "items": False,
        "description": f"1 to {turns} exchanges: user first, roles alternating, assistant last."}}}


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(error: Any) -> str:
    """One short line per jsonschema error; the default messages repeat whole instances."""
    kind, value, limit = error.validator, error.instance, error.validator_value
    if kind == "type":
        wanted = " or ".join(limit) if isinstance(limit, list) else limit
        return f"must be {'an' if wanted[0] in 'aeiou' else 'a'} {wanted} (got {_json_type(value)})"
    if kind in ("minLength", "pattern"):
        return "must not be empty"
    if kind == "maxLength":
        return f"is {len(value)} characters long, at most {limit}"
    if kind == "const":
        return f"must be {limit!r} (got {repr(value)[:40]})"
    if kind == "minItems":
        return f"must hold at least {limit} entries (got {len(value)})"
    if kind in ("maxItems", "items"):
        return "holds too many entries"
    return " ".join(error.message.split())[:200]


def _surrogate_paths(value: Any, path: tuple[Any, ...] = ()) -> list[str]:
    # JSON "\ud800" decodes to a lone surrogate that cannot be written as UTF-8 later.
    if isinstance(value, str):
        return [_path(path)] if any("\ud800" <= c <= "\udfff" for c in value) else []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [p for key, child in children for p in _surrogate_paths(child, (*path, key))]


def _strip(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return {k: _strip(v) for k, v in value.items()} if isinstance(value, dict) else value


def _problems(validator: Draft202012Validator, value: Any) -> list[str]:
    """Every schema error of one normalized value, ordered by path, as 'path: message'."""
    def key(error: Any) -> list[tuple[int, Any]]:
        return [(0, p) if isinstance(p, int) else (1, p) for p in error.absolute_path]
    lines = []
    for error in sorted(validator.iter_errors(value), key=key):
        where = _path(error.absolute_path)
        lines.append(f"{where}: {_message(error)}" if where else _message(error))
    lines += [f"{where or 'text'}: contains an unpaired surrogate" for where in _surrogate_paths(value)]
    return list(dict.fromkeys(lines))  # minLength and pattern both say "must not be empty"


def _normalize(raw: Any, kind: Kind, turns: int) -> tuple[dict[str, Any] | None, list[str]]:
    """The stripped item with only its known keys (None when invalid), and its problems."""
    value = _strip(raw)
    if kind == "conversation" and isinstance(value, dict) and isinstance(value.get("messages"), list):
        value["messages"] = value["messages"][: 2 * turns]  # keep the first `turns` exchanges
    problems = _problems(_validator(kind, turns), value)
    if problems or not isinstance(value, dict):
        return None, problems
    if kind == "qa":
        item = {"question": value["question"], "answer": value["answer"]}
        if value.get("evidence"):  # null and "" both mean "no quote"
            item["evidence"] = value["evidence"]
        return item, []
    messages = value["messages"]
    if len(messages) % 2:
        return None, ["messages: ends with a user message; a conversation ends with the assistant's reply"]
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}, []


_VALIDATORS: dict[tuple[str, int], Draft202012Validator] = {}


def _validator(kind: str, turns: int) -> Draft202012Validator:
    key = (kind, turns if kind == "conversation" else 0)
    if key not in _VALIDATORS:  # compiled once per shape: the stage parses thousands of responses
        schema = _STRING_SCHEMA if kind == "strings" else item_schema(kind, turns)  # type: ignore[arg-type]
        _VALIDATORS[key] = Draft202012Validator(schema)
    return _VALIDATORS[key]


_STRING_SCHEMA = _text(MAX_TEXT_CHARS, "One paraphrase.")


@dataclass(frozen=True)
class _Found:
    raw: list[Any]
    tail: Rejected | None = None  # the broken rest of the container, when salvaged


def _repair(text: str, start: int) -> tuple[str, list[int], bool]:
    """The container at ``start`` with deterministic fixes, its map to original offsets, and
    whether it closed before the end.

    Fixes: a comma before ``]``/``}`` becomes a space (teachers copy JavaScript habits);
    Python-style 'single-quoted' strings become JSON strings (teachers print Python literals);
    ``\\'`` in a JSON string becomes ``'`` (teachers escape apostrophes, invalid in JSON).
    """
    out: list[str] = []
    where: list[int] = []
    quote, depth, i = "", 0, start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and i + 1 < len(text):
                pair = "'" if text[i + 1] == "'" else c + text[i + 1]
                out.append(pair)
                where.extend([i] * len(pair))
                i += 2
                continue
            if c == quote:
                c, quote = '"', ""
            elif c == '"':  # a double quote inside a single-quoted string
                c = '\\"'
        elif c in "\"'":
            c, quote = '"', c
        elif c == "," and text[_skip(text, i + 1):_skip(text, i + 1) + 1] in ("]", "}"):
            c = " "
        elif c in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                break
        elif c in "]}":
            depth -= 1
        out.append(c)
        where.extend([i] * len(c))
        i += 1
        if depth == 0 and not quote:
            return "".join(out), where, True
    return "".join(out), where, False


def _decode(text: str, at: int) -> tuple[Any, int] | json.JSONDecodeError:
    try:
        return _DECODER.raw_decode(text, at)
    except json.JSONDecodeError as error:
        return error
    except RecursionError:
        return json.JSONDecodeError("nested too deep", text, at)
    except ValueError:  # an integer of more than 4300 digits
        return json.JSONDecodeError("number too long", text, at)


def _skip(text: str, i: int, also: str = "") -> int:
    while i < len(text) and (text[i].isspace() or text[i] in also):
        i += 1
    return i


def _salvage(text: str, i: int) -> tuple[Any, json.JSONDecodeError | None]:
    """The complete entries of the container at ``i`` (an array value that breaks inside an
    object is salvaged too), and the error where it broke (None when whole)."""
    is_object = text[i] == "{"
    close, entries = "}" if is_object else "]", []

    def done(error: json.JSONDecodeError | None) -> tuple[Any, json.JSONDecodeError | None]:
        return (dict(entries) if is_object else [value for _, value in entries]), error

    i = _skip(text, i + 1)
    while text[i:i + 1] != close:
        key = None
        if is_object:
            got = _decode(text, i) if text[i:i + 1] == '"' else json.JSONDecodeError("Expecting property name", text, i)
            if isinstance(got, json.JSONDecodeError):
                return done(got)
            key, i = got[0], _skip(text, got[1])
            if text[i:i + 1] != ":":
                return done(json.JSONDecodeError("Expecting ':' delimiter", text, i))
            i = _skip(text, i + 1)
        got = _decode(text, i)
        if isinstance(got, json.JSONDecodeError):
            if is_object and text[i:i + 1] == "[":  # {"pairs": [ ... broken
                value, error = _salvage(text, i)
                entries.append((key, value))
                return done(error)
            return done(got)
        entries.append((key, got[0]))
        i = _skip(text, got[1])
        if text[i:i + 1] == ",":
            i = _skip(text, i + 1)
        elif text[i:i + 1] != close:
            return done(json.JSONDecodeError("Expecting ',' delimiter", text, i))
    return done(None)


@dataclass(frozen=True)
class _Broken:
    """A container that failed to decode even after ``_repair``."""

    repaired: str
    where: list[int]  # repaired offset -> offset in the scanned text
    closed: bool  # its brackets closed before the end of the text
    error: json.JSONDecodeError

    def tail(self, error: json.JSONDecodeError | None, base: int, after: int) -> Rejected:
        """The broken rest: cut off when it never closed and the decoder ran out of text (an
        unterminated string runs to the end), else the syntax error and where it is."""
        error = error or self.error
        at = base + self.where[min(error.pos, len(self.where) - 1)]
        ran_out = error.pos >= len(self.repaired.rstrip()) or error.msg.startswith("Unterminated string")
        if not self.closed and ran_out:
            return Rejected(f"response cut off after item {after}" if after else
                            "response cut off before the first complete item")
        return Rejected(f"JSON syntax error at char {at}" + (f" after item {after}" if after else "") + f": {error.msg}")


def _decode_repaired(text: str, p: int) -> tuple[Any, int] | _Broken:
    """Decode the container at ``p`` after ``_repair``: (value, its end in ``text``) or why not."""
    repaired, where, closed = _repair(text, p)
    got = _decode(repaired, 0)
    return _Broken(repaired, where, closed, got) if isinstance(got, json.JSONDecodeError) else (
        got[0], where[got[1] - 1] + 1)


class _Scanner:
    """Tries candidate positions in order; remembers the first failure and the first empty JSON."""

    def __init__(self, extract: Callable[[Any, bool], list[Any] | None]) -> None:
        self.extract = extract
        self.budget = MAX_REPAIR_ATTEMPTS
        self.tries = MAX_FAILED_CANDIDATES
        self.failure: str | None = None  # the first JSON-looking container that broke with no items
        self.empty_at: int | None = None  # the first JSON that decoded but held no items

    def region(self, text: str, base: int) -> _Found | None:
        """The first container in ``text`` (a slice starting at ``base``) that yields items."""
        skip_to = 0
        for match in re.finditer(r"[\[{]", text):
            p = match.start()
            if p < skip_to:  # inside a container already judged
                continue
            got: tuple[Any, int] | _Broken | json.JSONDecodeError = _decode(text, p)
            if isinstance(got, json.JSONDecodeError):
                self.tries -= 1
                if self.tries <= 0:
                    self.failure = self.failure or f"no JSON at the first {MAX_FAILED_CANDIDATES} brackets"
                    return None
                if self.budget <= 0 or not _looks_like_json(text, p):
                    continue
                self.budget -= 1
                got = _decode_repaired(text, p)
            if isinstance(got, _Broken):
                found, skip_to = self.salvage(got, base)
            else:
                found = self.decoded(text, got, base, p)
                skip_to = got[1]  # a container is judged whole: no items in {"a": [..], "b": [..]} either
            if found is not None:
                return found
        return None

    def decoded(self, text: str, got: tuple[Any, int], base: int, p: int) -> _Found | None:
        raw = self.extract(got[0], True)
        if raw is None:
            self.empty_at = base + p if self.empty_at is None else self.empty_at
            return None
        single = isinstance(got[0], dict) and raw == [got[0]]
        return self.stream(text, got[1], raw, base) if single else _Found(raw)

    def salvage(self, broken: _Broken, base: int) -> tuple[_Found | None, int]:
        """The complete items before the break, or where scanning goes on when there are none."""
        partial, error = _salvage(broken.repaired, 0)
        raw = self.extract(partial, False)
        tail = broken.tail(error, base, len(raw or ()))
        if raw:
            return _Found(raw, tail), 0
        self.failure = self.failure or tail.reason
        return None, broken.where[min((error or broken.error).pos, len(broken.where) - 1)]

    def stream(self, text: str, end: int, first: list[Any], base: int) -> _Found:
        """JSON lines: more item objects after the first, separated only by whitespace or commas."""
        items, i = list(first), _skip(text, end, ",")
        while text[i:i + 1] == "{":
            got: tuple[Any, int] | _Broken | json.JSONDecodeError = _decode(text, i)
            if isinstance(got, json.JSONDecodeError):
                got = _decode_repaired(text, i)
                if isinstance(got, _Broken):
                    return _Found(items, got.tail(None, base, len(items)))
            if self.extract(got[0], True) != [got[0]]:  # a wrapper or a non-item: the items have ended
                break
            items.append(got[0])
            i = _skip(text, got[1], ",")
        return _Found(items)


def _looks_like_json(text: str, p: int) -> bool:
    # Prose brackets ("[1]", "{name}") are not worth repairing; "[{", "[\"", "{'" are.
    after = _skip(text, p + 1)
    following = text[after:after + 1]
    return following in ("{", "[", '"', "'") if text[p] == "[" else following in ('"', "'")


def _find(text: Any, extract: Callable[[Any, bool], list[Any] | None], expected: str,
          check: Callable[[Any, int], tuple[dict[str, Any] | None, list[str]]]) -> Parsed:
    """Find the first container of items (fenced blocks first) and check each item.

    Args:
        text: the response.
        extract: the raw items a decoded value holds (None for none); its flag is False when the
            value was salvaged.
        expected: what the teacher should have written, for the error.
        check: (raw item, count of valid items so far) -> (normalized item, problems).
    """
    if not isinstance(text, str) or not text.strip():
        return Parsed((), (), "response is empty" if isinstance(text, str) else
                      f"response is not text (got {type(text).__name__})", False)
    scanner = _Scanner(extract)
    regions = [(m.start(1), m.end(1)) for m in _FENCE.finditer(text)] + [(0, len(text))]
    found = next(filter(None, (scanner.region(text[start:end], start) for start, end in regions)), None)
    if found is None:
        empty = f"no items in the JSON at char {scanner.empty_at}: expected {expected}"
        return Parsed((), (), scanner.failure or (empty if scanner.empty_at is not None else "no JSON found"), False)
    # A broken container skipped before the one used is reported: nothing is dropped silently.
    rejected = [Rejected(f"{scanner.failure} (skipped for later JSON)")] if scanner.failure else []
    salvaged = bool(rejected) or found.tail is not None
    items = []
    for number, raw in enumerate(found.raw, 1):
        item, problems = check(raw, len(items))
        if item is None:
            rejected.append(Rejected(f"item {number}: " + "; ".join(problems), raw))
        else:
            items.append(item)
    return Parsed(tuple(items), tuple(rejected + ([found.tail] if found.tail else [])), None, salvaged)


def _extract(value: Any, kind: str, whole: bool) -> list[Any] | None:
    """The raw items a decoded value holds (kind "strings" for paraphrases), or None for none."""
    member = str if kind == "strings" else dict
    if isinstance(value, list):
        if not any(isinstance(v, member) for v in value):
            return None
        # A bare message list is one conversation; not when salvaged, since it would be cut short.
        bare = all(isinstance(v, dict) and "role" in v and "messages" not in v for v in value)
        return [{"messages": value}] if kind == "conversation" and bare and whole else value
    if not isinstance(value, dict):
        return None
    if any(key in value for key in _ITEM_KEYS.get(kind, ())):
        return [value]
    lists = {k: v for k, v in value.items() if isinstance(v, list) and any(isinstance(x, member) for x in v)}
    known = [v for k, v in lists.items() if k.lower() in _WRAPPER_KEYS]
    if len(lists) == 1 or len(known) == 1:  # several lists: only a well-known name is unambiguous
        return _extract(next(iter(lists.values())) if len(lists) == 1 else known[0], kind, whole)
    inner = [v for v in value.values() if isinstance(v, dict)]
    return _extract(inner[0], kind, whole) if len(inner) == 1 and not lists else None  # {"result": {"pairs": ..}}


def parse_items(text: str, kind: Kind, turns: int) -> Parsed:
    """Parse one teacher response into items of ``kind``.

    Args:
        text: the raw response; any value (non-text and garbage give ``error``, never an exception).
        kind: "qa" or "conversation".
        turns: the most exchanges per conversation; longer ones keep their first ``turns``.

    Returns:
        The valid items (normalized), every rejected item with its reason, and what went wrong.

    Raises:
        ValueError: for an unknown kind or ``turns < 1`` (a caller's bug, not the teacher's).
    """
    item_schema(kind, turns if kind == "conversation" else 1)
    return _find(text, lambda value, whole: _extract(value, kind, whole), _EXPECTED[kind],
                 lambda raw, _: _normalize(raw, kind, turns))


def parse_strings(text: str, expected: int) -> Parsed:
    """Parse a response that should be a JSON array of ``expected`` strings (paraphrases).

    Args:
        text: the raw response.
        expected: how many strings were asked for; valid strings beyond that are rejected.

    Returns:
        Items ``{"text": s}`` (stripped), rejected strings with reasons, and what went wrong.

    Raises:
        ValueError: for ``expected < 1``.
    """
    if not isinstance(expected, int) or expected < 1:
        raise ValueError(f"parse_strings: expected must be >= 1 (got {expected!r})")

    def check(raw: Any, valid: int) -> tuple[dict[str, Any] | None, list[str]]:
        problems = _problems(_validator("strings", 0), _strip(raw))
        if not problems and valid >= expected:
            problems = [f"more than the {expected} strings asked for"]
        return (None, problems) if problems else ({"text": _strip(raw)}, [])

    return _find(text, lambda value, whole: _extract(value, "strings", whole), _EXPECTED["strings"], check)
