"""Ending a constrained reply within its token budget: when a row's remaining tokens reach what
the shortest valid ending of its reply takes, the row is made to write that ending.

Why by hand: the grammar keeps every reply a prefix of valid JSON, but not one that ends in time.
A small teacher under the grammar loops ("20.22-23.25. 20.22-23.25. ..." at 1.2 characters a
token, SmolLM2-135M on the CamlIDL manual) and fills every string to its maxLength; cut at
max_new_tokens, the reply is not JSON. xgrammar has no token budget, and no library closes a
JSON document early. Our reply schemas have one shape each (fixed item counts, properties in
order, one layout: json.dumps(indent=2)), so the shortest ending of any prefix is simple to
write: finish the open string (padded to its minLength, then its closing mark, as a question's
"?"), then every later string at its minLength.

The guarantee: the ending's tokens are counted by the teacher's own tokenizer and forcing starts
while they fit, with two tokens to spare (a free token before may retokenize the ending one
token longer, and the stop token needs its step), so a reply ends as valid JSON within
max_new_tokens. The exceptions are a byte-level token that splits a character (nothing is
forced while the decoded text ends in U+FFFD) and a forced token the grammar masks (then the
row goes on unforced).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

INDENT = 2  # the replies' layout: json.dumps(indent=2), which xgrammar's indent=2 writes too
SPARE_TOKENS = 2
# A string schema's own note of what closing needs when its pattern hides it: the pattern is the
# truth for validation and the grammar (xgrammar ignores minLength beside a pattern), this repeats
# its shortest length and its last character for ``pieces``.
SHAPE_KEY = "x-shape"


@dataclass(frozen=True)
class Slot:
    """A string in the shape: at least ``least`` characters, the last of them ``ends`` when set."""

    least: int
    ends: str = ""


Piece = str | Slot  # literal JSON text, or a string slot (its quotes belong to the slot)
_MARK = "\ue000{}\ue001"  # a slot's placeholder in the skeleton: private-use characters, dumped raw


def pieces(schema: dict[str, Any]) -> list[Piece]:
    """The schema's one layout: the literal text of json.dumps(indent=INDENT) around the slots.

    Raises:
        ValueError: for a schema with more than one shape (an array whose length may vary, a
            type other than object, array, string or const).
    """
    slots: list[Slot] = []
    text = json.dumps(_skeleton(schema, slots), ensure_ascii=False, indent=INDENT)
    out: list[Piece] = []
    for index, slot in enumerate(slots):
        before, text = text.split(json.dumps(_MARK.format(index), ensure_ascii=False), 1)
        out += [before, slot] if before else [slot]
    return out + ([text] if text else [])


def _skeleton(schema: dict[str, Any], slots: list[Slot]) -> Any:
    """The document with each string replaced by its slot's placeholder."""
    if "const" in schema:
        return schema["const"]
    if schema.get("type") == "string":
        shape = schema.get(SHAPE_KEY, schema)
        slots.append(Slot(int(shape.get("minLength", 0)), shape.get("endsWith", "")))
        return _MARK.format(len(slots) - 1)
    if schema.get("type") == "array" and schema.get("minItems") == schema.get("maxItems") is not None:
        shapes = schema.get("prefixItems") or [schema["items"]] * schema["minItems"]
        return [_skeleton(shape, slots) for shape in shapes]
    if schema.get("type") == "object":
        return {key: _skeleton(shape, slots) for key, shape in schema["properties"].items()}
    raise ValueError(f"not a one-shape schema: {json.dumps(schema)[:120]}")


def ending(shape: Sequence[Piece], text: str) -> str | None:
    """The shortest text that makes ``text`` (a prefix of the shape) a whole document; None when
    ``text`` does not follow the shape."""
    at = 0
    for index, piece in enumerate(shape):
        rest = _minimal(shape[index + 1:])
        if isinstance(piece, str):
            written = text[at:at + len(piece)]
            if not piece.startswith(written):
                return None
            if len(written) < len(piece):
                return piece[len(written):] + rest
            at += len(piece)
            continue
        if at == len(text):
            return _minimal(shape[index:])
        if text[at] != '"':
            return None
        inside = _open_string(text, at + 1)
        if isinstance(inside, int):  # the string closed at index `inside`
            at = inside + 1
            continue
        chars, escape = inside
        if piece.ends and not escape and text.endswith(piece.ends) and chars >= piece.least:
            return '"' + rest  # the slot's last character is written: only its quote may follow
        return escape + _filler(piece, chars) + '"' + rest
    return "" if at == len(text) else None


def _open_string(text: str, start: int) -> int | tuple[int, str]:
    """Where the JSON string starting at ``start`` closes, or (its characters so far, what ends
    an escape cut at the end of ``text``) when it is still open."""
    chars, at = 0, start
    while at < len(text):
        char = text[at]
        if char == '"':
            return at
        if char == "\\":
            if at + 1 == len(text):
                return chars + 1, "n"
            if text[at + 1] == "u":
                digits = text[at + 2:at + 6]
                if len(digits) < 4:
                    return chars + 1, "A" * (4 - len(digits))  # U+xAAA: a plain letter range
                at += 6
            else:
                at += 2
        else:
            at += 1
        chars += 1
    return chars, ""


def _filler(slot: Slot, chars: int) -> str:
    """What completes a slot holding ``chars`` characters: "x"s up to its length, its last character."""
    return "x" * max(0, slot.least - len(slot.ends) - chars) + slot.ends


def layout_chars(shape: Sequence[Piece]) -> int:
    """The characters of a document of this shape beside its strings' contents: literals, quotes."""
    return sum(len(piece) if isinstance(piece, str) else 2 for piece in shape)


def _minimal(shape: Sequence[Piece]) -> str:
    return "".join(piece if isinstance(piece, str) else '"' + _filler(piece, 0) + '"' for piece in shape)


class BudgetCloser:
    """A ``LogitsProcessor`` that forces each row's shortest ending once its remaining tokens are
    down to the ending's length (see the module's guarantee). Runs after the grammar's mask."""

    def __init__(self, tokenizer: Any, shapes: Sequence[Sequence[Piece]], prompt_tokens: int,
                 max_new_tokens: int) -> None:
        self.tokenizer, self.shapes = tokenizer, shapes
        self.prompt_tokens, self.max_new_tokens = prompt_tokens, max_new_tokens
        # No ending is longer than the whole shortest document: rows further from their budget
        # than that (in characters, at least one a token) are not decoded at all.
        self.longest = max(len(_minimal(shape)) for shape in shapes) + SPARE_TOKENS

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        left = self.max_new_tokens - (input_ids.shape[1] - self.prompt_tokens)
        if left > self.longest:
            return scores
        for row, shape in enumerate(self.shapes):
            token = self._forced(input_ids[row, self.prompt_tokens:].tolist(), shape, left)
            if token is not None and token < scores.shape[1] and torch.isfinite(scores[row, token]):
                kept = scores[row, token].clone()
                scores[row] = float("-inf")
                scores[row, token] = kept
        return scores

    def _forced(self, new: list[int], shape: Sequence[Piece], left: int) -> int | None:
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # a character split across byte tokens: wait for the rest
            return None
        rest = ending(shape, text)
        if not rest:  # finished (the grammar allows only the stop token now), or off the shape
            return None
        tokens = self.tokenizer.encode(rest, add_special_tokens=False)
        return tokens[0] if tokens and left <= len(tokens) + SPARE_TOKENS else None
