"""Locating JSON in one teacher response (free text): the container of items, repaired or salvaged.

Pure and deterministic: stdlib only, never raises on any text (a tiny random model emits random
tokens, and the stage must not crash on them). What counts as items is the caller's ``extract``;
checking them is ``parse``'s job.

Finding the JSON. Candidates are the ``[``/``{`` positions of each fenced block (in order), then
of the whole text; the first that decodes (``raw_decode``) into items wins. A single item object
may be followed, JSON-lines style, by more item objects separated only by whitespace or commas.
When a candidate that looks like JSON fails, it is decoded again after a few deterministic repairs
(see ``_repair``); if that fails too, every complete item before the break is salvaged and the
broken tail becomes one rejected reason. Content is never guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Found:
    """The raw items of the container used, and the reason for its broken rest when salvaged."""

    raw: list[Any]
    tail: str | None = None  # the broken rest of the container, when salvaged


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
    close = "}" if is_object else "]"
    entries: list[tuple[str | None, Any]] = []

    def done(error: json.JSONDecodeError | None) -> tuple[Any, json.JSONDecodeError | None]:
        return (dict(entries) if is_object else [value for _, value in entries]), error

    i = _skip(text, i + 1)
    while text[i:i + 1] != close:
        key = None
        if is_object:
            got = (_decode(text, i) if text[i:i + 1] == '"'
                   else json.JSONDecodeError("Expecting property name", text, i))
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

    def tail(self, error: json.JSONDecodeError | None, base: int, after: int) -> str:
        """The reason for the broken rest: cut off when it never closed and the decoder ran out of text (an
        unterminated string runs to the end), else the syntax error and where it is."""
        error = error or self.error
        at = base + self.where[min(error.pos, len(self.where) - 1)]
        ran_out = error.pos >= len(self.repaired.rstrip()) or error.msg.startswith("Unterminated string")
        if not self.closed and ran_out:
            return (f"response cut off after item {after}" if after
                    else "response cut off before the first complete item")
        return f"JSON syntax error at char {at}" + (f" after item {after}" if after else "") + f": {error.msg}"


def _decode_repaired(text: str, p: int) -> tuple[Any, int] | _Broken:
    """Decode the container at ``p`` after ``_repair``: (value, its end in ``text``) or why not."""
    repaired, where, closed = _repair(text, p)
    got = _decode(repaired, 0)
    return _Broken(repaired, where, closed, got) if isinstance(got, json.JSONDecodeError) else (
        got[0], where[got[1] - 1] + 1)


class Scanner:
    """Tries candidate positions in order; remembers the first failure and the first empty JSON."""

    def __init__(self, extract: Callable[[Any, bool], list[Any] | None]) -> None:
        self.extract = extract
        self.budget = MAX_REPAIR_ATTEMPTS
        self.tries = MAX_FAILED_CANDIDATES
        self.failure: str | None = None  # the first JSON-looking container that broke with no items
        self.empty_at: int | None = None  # the first JSON that decoded but held no items

    def find(self, text: str) -> Found | None:
        """The first container of items in ``text``: fenced blocks first, then the whole text."""
        regions = [(m.start(1), m.end(1)) for m in _FENCE.finditer(text)] + [(0, len(text))]
        return next(filter(None, (self.region(text[start:end], start) for start, end in regions)), None)

    def region(self, text: str, base: int) -> Found | None:
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

    def decoded(self, text: str, got: tuple[Any, int], base: int, p: int) -> Found | None:
        raw = self.extract(got[0], True)
        if raw is None:
            self.empty_at = base + p if self.empty_at is None else self.empty_at
            return None
        single = isinstance(got[0], dict) and raw == [got[0]]
        return self.stream(text, got[1], raw, base) if single else Found(raw)

    def salvage(self, broken: _Broken, base: int) -> tuple[Found | None, int]:
        """The complete items before the break, or where scanning goes on when there are none."""
        partial, error = _salvage(broken.repaired, 0)
        raw = self.extract(partial, False)
        tail = broken.tail(error, base, len(raw or ()))
        if raw:
            return Found(raw, tail), 0
        self.failure = self.failure or tail
        return None, broken.where[min((error or broken.error).pos, len(broken.where) - 1)]

    def stream(self, text: str, end: int, first: list[Any], base: int) -> Found:
        """JSON lines: more item objects after the first, separated only by whitespace or commas."""
        items, i = list(first), _skip(text, end, ",")
        while text[i:i + 1] == "{":
            got = _decode(text, i)
            if isinstance(got, json.JSONDecodeError):
                repaired = _decode_repaired(text, i)
                if isinstance(repaired, _Broken):
                    return Found(items, repaired.tail(None, base, len(items)))
                got = repaired
            if self.extract(got[0], True) != [got[0]]:  # a wrapper or a non-item: the items have ended
                break
            items.append(got[0])
            i = _skip(text, got[1], ",")
        return Found(items)


def _looks_like_json(text: str, p: int) -> bool:
    # Prose brackets ("[1]", "{name}") are not worth repairing; "[{", "[\"", "{'" are.
    after = _skip(text, p + 1)
    following = text[after:after + 1]
    return following in ("{", "[", '"', "'") if text[p] == "[" else following in ('"', "'")
