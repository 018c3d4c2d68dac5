"""One raw teacher response (free text) -> the valid items, every rejected item with its reason.

Pure and deterministic: stdlib + ``jsonschema``, never raises on any text (a tiny random model
emits random tokens, and the stage must not crash on them).

Finding the JSON (fenced blocks first, ``raw_decode`` scanning, repairs, salvage of the complete
items before a break) lives in ``jsonfind``; a broken tail becomes one ``Rejected``. A qa reply
with no JSON items is read as labelled prose (``prose``), the format small teachers fall back to.
Content is never guessed at. Items come from an array holding objects, an object holding one such array
under any key, or a single item object (see ``_extract``).

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema import Draft202012Validator

from distill.runtime.synthesis.jsonfind import Scanner
from distill.runtime.synthesis.prose import prose_pairs

Kind = Literal["qa", "conversation"]

MAX_QUESTION_CHARS = 1000
MAX_TEXT_CHARS = 4000  # answers, evidence, message contents, paraphrases
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
    form: Literal["json", "prose"] = "json"  # prose: read by ``prose.prose_pairs``, no JSON held items

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
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


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


def _validator(kind: Kind | Literal["strings"], turns: int) -> Draft202012Validator:
    key = (kind, turns if kind == "conversation" else 0)
    if key not in _VALIDATORS:  # compiled once per shape: the stage parses thousands of responses
        schema = _STRING_SCHEMA if kind == "strings" else item_schema(kind, turns)
        _VALIDATORS[key] = Draft202012Validator(schema)
    return _VALIDATORS[key]


_STRING_SCHEMA = _text(MAX_TEXT_CHARS, "One paraphrase.")


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
    scanner = Scanner(extract)
    found = scanner.find(text)
    if found is None:
        empty = f"no items in the JSON at char {scanner.empty_at}: expected {expected}"
        return Parsed((), (), scanner.failure or (empty if scanner.empty_at is not None else "no JSON found"), False)
    # A broken container skipped before the one used is reported: nothing is dropped silently.
    rejected = [Rejected(f"{scanner.failure} (skipped for later JSON)")] if scanner.failure else []
    salvaged = bool(rejected) or found.tail is not None
    items, invalid = _checked(found.raw, check)
    return Parsed(tuple(items), tuple(rejected + invalid + ([Rejected(found.tail)] if found.tail else [])), None,
                  salvaged)


def _checked(raws: list[Any], check: Callable[[Any, int], tuple[dict[str, Any] | None, list[str]]]
             ) -> tuple[list[dict[str, Any]], list[Rejected]]:
    """Each raw item checked: the valid ones normalized, the rest rejected as "item N: ..."."""
    items: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for number, raw in enumerate(raws, 1):
        item, problems = check(raw, len(items))
        if item is None:
            rejected.append(Rejected(f"item {number}: " + "; ".join(problems), raw))
        else:
            items.append(item)
    return items, rejected


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
    parsed = _find(text, lambda value, whole: _extract(value, kind, whole), _EXPECTED[kind],
                   lambda raw, _: _normalize(raw, kind, turns))
    if kind == "qa" and parsed.error is not None and isinstance(text, str):
        return _from_prose(text) or parsed
    return parsed


def _from_prose(text: str) -> Parsed | None:
    """The "Question: ... Answer: ..." pairs of a reply without JSON items, checked like JSON
    items; None when it holds none. Read whole, so no repair is asked: a small teacher asked
    again repeats its prose (issue 19), and the pairs are the content wanted."""
    pairs = prose_pairs(text)
    if not pairs:
        return None
    items, rejected = _checked(pairs, lambda raw, _: _normalize(raw, "qa", 1))
    return Parsed(tuple(items), tuple(rejected), None, False, "prose")


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
