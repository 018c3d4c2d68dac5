"""Misaligned lines in a Distillfile: the likely cause behind ruamel's syntax errors.

ruamel reports where parsing broke ("mapping values are not allowed here", "expected <block end>"),
which is the line after the misaligned one, or the misaligned line read as part of something else.
No YAML library names the line to move and the column to move it to, so this module re-reads the
lines before that point for the shape of the file (keys, list items, block scalars) and does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from distill.compiler.errors import Diagnostic, Location

# ruamel's Reader breaks lines at these; str.splitlines also breaks at \v, \f and \x1c-\x1e, which
# would shift the line numbers ruamel reports.
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
# An entry's key: a plain or quoted name, a colon, then a space or the end of the line.
_KEY = re.compile(r"""(?P<key>"[^"]*"|'[^']*'|[^\s#'"{}\[\],:][^#:]*?)\s*:(?:\s+(?P<value>.*))?$""")
_BLOCK_SCALAR = re.compile(r"[|>][-+1-9]*")
_COMMENT = re.compile(r"(?:^|\s)#.*")
_BROKEN_BLOCKS = ("mapping values are not allowed here", "expected <block end>")


@dataclass(frozen=True)
class _Level:
    """An entry a line opens, a key or a list item, at the 0-based column its siblings share."""

    column: int
    line: int
    label: str  # as written: `epochs:`, `- gguf:`
    item: bool  # a list item, not a key


@dataclass(frozen=True)
class _Line:
    """A line with content: not blank, not a comment, not the text of a block scalar."""

    number: int
    indent: int
    levels: tuple[_Level, ...]  # outermost first: `- pdf: a` opens the item, then the key
    has_value: bool  # the value is on the line, so no deeper line may follow
    block_scalar: bool  # `prompt: |`: the deeper lines below are its text


def _parse_line(number: int, text: str) -> _Line | None:
    body = text.lstrip(" ")
    if not body or body.startswith("#"):
        return None
    indent = len(text) - len(body)
    is_item = body == "-" or body.startswith("- ")
    rest = body[1:].lstrip(" ") if is_item else body
    key = _KEY.match(rest)
    levels = []
    if is_item:
        levels.append(_Level(indent, number, f"- {key['key']}:" if key else "-", True))
    if key:
        levels.append(_Level(len(text) - len(rest), number, f"{key['key']}:", False))
    value = _COMMENT.sub("", (key["value"] or "") if key else rest).strip()
    scalar = _BLOCK_SCALAR.fullmatch(value) is not None
    return _Line(number, indent, tuple(levels), bool(value) and not scalar, scalar)


def _content_lines(texts: list[str]) -> list[_Line]:
    lines: list[_Line] = []
    scalar_indent = -1  # the indentation of the key whose block scalar is open, else -1
    for number, text in enumerate(texts, 1):
        line = _parse_line(number, text)
        if line is None or (scalar_indent >= 0 and line.indent > scalar_indent):
            continue
        scalar_indent = line.indent if line.block_scalar else -1
        lines.append(line)
    return lines


def _open_levels(lines: list[_Line]) -> list[_Level]:
    """The entries still open after ``lines``, innermost first: a later line may align with any."""
    found: list[_Level] = []
    limit = math.inf
    for line in reversed(lines):
        for level in reversed(line.levels):
            if level.column < limit:
                found.append(level)
                limit = level.column
        if limit == 0:
            break
    return found


def misindented(text: str, display: str, index: int, problem: str) -> Diagnostic | None:
    """The misaligned line behind a syntax error reported at 0-based line ``index``, if it is one."""
    texts = _LINE_BREAK.split(text)[: index + 1]
    if len(texts) <= index:
        return None
    if "'\\t'" in problem:
        return _tab_indented(texts[index], index + 1, display)
    if not problem.startswith(_BROKEN_BLOCKS):
        return None
    lines = _content_lines(texts)
    if len(lines) < 2 or lines[-1].number != index + 1:
        return None
    *before, line = lines
    previous = before[-1]
    if not line.levels or not previous.levels:  # a line of plain text: no entry to realign
        return None
    # The level of the line above that this one would align with: an item with an item.
    peer = next((lv for lv in reversed(previous.levels) if lv.item == line.levels[0].item),
                previous.levels[-1])
    if previous.has_value and line.indent > peer.column:
        return _under_indented(before, line, display) or _over_indented(before, peer, line, display)
    if line.indent < peer.column:
        return _between_levels(before, line, display)
    return None


def _tab_indented(text: str, number: int, display: str) -> Diagnostic | None:
    indent = text[: len(text) - len(text.lstrip(" \t"))]
    if "\t" not in indent:
        return None
    return Diagnostic(Location(display, number, indent.index("\t") + 1),
                      f"YAML indentation: line {number} is indented with a tab",
                      "indent with spaces; YAML does not allow tabs")


def _over_indented(before: list[_Line], peer: _Level, line: _Line, display: str) -> Diagnostic:
    item = line.levels[0].item
    # A list item can only align with a list item: under a key, the nearest open list's.
    target = peer if peer.item == item else next(
        (lv for lv in _open_levels(before) if lv.item and lv.column < line.indent), peer)
    return Diagnostic(
        Location(display, line.number, line.indent + 1),
        f"YAML indentation: line {line.number} is indented more than `{peer.label}` on line "
        f"{peer.line} (column {peer.column + 1}), which already has a value; YAML reads it as a "
        f"nested {'list' if item else 'mapping'} where none can start",
        f"align `{line.levels[0].label}` with `{target.label}` (line {target.line}, column {target.column + 1})")


def _under_indented(before: list[_Line], line: _Line, display: str) -> Diagnostic | None:
    """A key dedented in the middle of its section: the entries before and after it still align,
    and the one after reads as nested under it (``epochs`` / ``lr`` at column 1 / ``warmup``)."""
    *earlier, previous = before
    item = line.levels[0].item
    if previous.levels[0].item:
        return None
    open_levels = _open_levels(earlier)
    sibling = next((lv for lv in open_levels if lv.column == line.indent and lv.item == item), None)
    if sibling is None or sibling.column <= previous.indent:
        return None
    # The dedented key belongs beside the sibling, or inside the sibling's list item: with its key.
    target = sibling if not item else next(
        (lv for lv in reversed(open_levels) if not lv.item and lv.column > sibling.column), sibling)
    kind, ends = ("list items", "list") if item else ("keys", "section")
    return Diagnostic(
        Location(display, previous.number, previous.indent + 1),
        f"YAML indentation: line {previous.number} is indented less than the {kind} around it "
        f"(`{sibling.label}` on line {sibling.line} and `{line.levels[0].label}` on line "
        f"{line.number} are at column {sibling.column + 1}), which ends their {ends}",
        f"indent `{previous.levels[0].label}` to column {target.column + 1}, like `{target.label}`")


def _between_levels(before: list[_Line], line: _Line, display: str) -> Diagnostic | None:
    """A line dedented to a column no open entry of its kind starts at."""
    item = line.levels[0].item
    open_levels = [lv for lv in _open_levels(before) if lv.item == item]
    if any(lv.column == line.indent for lv in open_levels):
        return None
    # Innermost first, so columns fall: the last deeper one and the first shallower are nearest.
    nearest = [lv for lv in open_levels if lv.column > line.indent][-1:] + \
        [lv for lv in open_levels if lv.column < line.indent][:1]
    if not nearest:
        return None
    kind = "list item" if item else "key"
    where = ", ".join(f"`{lv.label}` on line {lv.line} is at column {lv.column + 1}" for lv in nearest)
    choices = " or with ".join(f"`{lv.label}` (line {lv.line}, column {lv.column + 1})" for lv in nearest)
    return Diagnostic(
        Location(display, line.number, line.indent + 1),
        f"YAML indentation: line {line.number} is indented to column {line.indent + 1}, which "
        f"matches no {kind} above it ({where})",
        f"align `{line.levels[0].label}` with {choices}")
