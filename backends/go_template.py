"""A renderer for the part of Go's ``text/template`` that distill's Ollama TEMPLATEs use, so an
export can render each TEMPLATE for probe conversations and compare it with the model's Jinja
chat template before writing it into a Modelfile.

Written by hand, for that subset only: Ollama renders TEMPLATEs with Go's ``text/template``, and
no pure-Python package implements it; those on PyPI wrap Go's own engine through cgo and build it
at install time with a Go toolchain (cognihub-pygotemplate; go-template, last released for Python
3.7), a dependency distill does not take for a test of its own six templates. The subset:
text; ``{{ }}`` actions with ``{{-`` / ``-}}`` trimming; ``if`` / ``else if`` / ``else`` /
``end``; ``range PIPELINE`` and ``range $i, $v := PIPELINE``; fields (``.Role``,
``$.Messages``, ``$v.Content``); variables; string and integer literals; parentheses; the
functions ``eq``, ``and``, ``or``, ``not``, ``len`` and ``slice``. Anything else raises
:class:`GoTemplateError`, so a TEMPLATE outside the subset fails its tests instead of rendering
something Ollama would not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# An action; group 1 and 3 are the trim markers ("{{- " trims the white space before the action,
# " -}}" the white space after it; Go requires the space beside the dash).
_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<number>-?\d+)'
                    r"|(?P<var>\$\w*)(?P<var_fields>(?:\.\w+)*)|(?P<field>(?:\.\w+)+|\.)"
                    r"|(?P<punct>:=|[(),])|(?P<ident>\w+))")
_WHITE = " \t\r\n"


class GoTemplateError(ValueError):
    """A template outside the supported subset, or one that fails as Go would fail it."""


@dataclass(frozen=True)
class _Operand:
    kind: str  # "string", "number", "var", "field", "ident", "group"
    value: Any
    fields: tuple[str, ...] = ()


@dataclass
class _If:
    branches: list[tuple[list[_Operand], list[_Node]]] = field(default_factory=list)
    otherwise: list[_Node] = field(default_factory=list)


@dataclass
class _Range:
    variables: tuple[str, ...]
    pipeline: list[_Operand]
    body: list[_Node] = field(default_factory=list)


_Node = str | list[_Operand] | _If | _Range


def render(template: str, data: dict[str, Any]) -> str:
    """``template`` executed on ``data`` (dicts for Go maps and structs, lists for slices), as
    ``text/template`` would print it."""
    body, _ = _parse(_lex(template), 0, ())
    out: list[str] = []
    _run(body, data, {"$": data}, out)
    return "".join(out)


def _lex(template: str) -> list[str | tuple[str, ...]]:
    """Text pieces (trimmed as the markers ask) and actions (their tokens)."""
    items: list[str | tuple[str, ...]] = []
    at, trim_next = 0, False
    for match in _ACTION.finditer(template):
        text = template[at:match.start()]
        text = text.lstrip(_WHITE) if trim_next else text
        items.append(text.rstrip(_WHITE) if match.group(1) else text)
        items.append(_tokens(match.group(2)))
        at, trim_next = match.end(), bool(match.group(3))
    tail = template[at:]
    items.append(tail.lstrip(_WHITE) if trim_next else tail)
    return items


def _tokens(action: str) -> tuple[str, ...]:
    tokens, at = [], 0
    action = action.strip()
    while at < len(action):
        match = _TOKEN.match(action, at)
        if match is None or match.end() == at:
            raise GoTemplateError(f"cannot read {action[at:]!r} in {{{{ {action} }}}}")
        tokens.append(match.group().strip())
        at = match.end()
    return tuple(tokens)


def _parse(items: list[str | tuple[str, ...]], at: int, ends: tuple[str, ...]) -> tuple[list[_Node], int]:
    """Nodes from ``items[at:]`` up to an action whose first word is in ``ends`` (returned at
    that action's index) or the end of the template."""
    nodes: list[_Node] = []
    while at < len(items):
        item = items[at]
        if isinstance(item, str):
            if item:
                nodes.append(item)
            at += 1
            continue
        if item and item[0] in ends:
            return nodes, at
        node: _Node
        if item[:1] == ("if",):
            node, at = _parse_if(items, at)
        elif item[:1] == ("range",):
            node, at = _parse_range(items, at)
        elif item and item[0] in ("end", "else"):
            raise GoTemplateError(f"unexpected {{{{ {' '.join(item)} }}}}")
        else:
            node, at = _pipeline(item), at + 1
        nodes.append(node)
    if ends:
        raise GoTemplateError("missing {{ end }}")
    return nodes, at


def _parse_if(items: list[str | tuple[str, ...]], at: int) -> tuple[_If, int]:
    node = _If()
    condition: tuple[str, ...] | None = _action(items, at)[1:]
    while True:
        body, at = _parse(items, at + 1, ("else", "end"))
        if condition is None:
            node.otherwise = body
        else:
            node.branches.append((_pipeline(condition), body))
        action = _action(items, at)
        if action[0] == "end":
            return node, at + 1
        if condition is None:
            raise GoTemplateError("{{ else }} after {{ else }}")
        condition = action[2:] if action[1:2] == ("if",) else None


def _parse_range(items: list[str | tuple[str, ...]], at: int) -> tuple[_Range, int]:
    words = _action(items, at)[1:]
    variables: tuple[str, ...] = ()
    if ":=" in words:
        split = words.index(":=")
        variables = tuple(w for w in words[:split] if w != ",")
        words = words[split + 1:]
    body, at = _parse(items, at + 1, ("end", "else"))
    if items[at][0] != "end":
        raise GoTemplateError("{{ range }} ... {{ else }} is outside the subset")
    return _Range(variables, _pipeline(words), body), at + 1


def _action(items: list[str | tuple[str, ...]], at: int) -> tuple[str, ...]:
    """The action at ``at``: where a block starts, and where ``_parse`` stops."""
    item = items[at]
    assert isinstance(item, tuple)
    return item


def _pipeline(words: tuple[str, ...]) -> list[_Operand]:
    operands, at = _operands(words, 0)
    if at != len(words):
        raise GoTemplateError(f"unexpected {words[at]!r}")
    if not operands:
        raise GoTemplateError("empty action")
    return operands


def _operands(words: tuple[str, ...], at: int) -> tuple[list[_Operand], int]:
    operands: list[_Operand] = []
    while at < len(words) and words[at] != ")":
        word = words[at]
        if word == "(":
            inner, at = _operands(words, at + 1)
            if at >= len(words):
                raise GoTemplateError("missing )")
            operands.append(_Operand("group", inner))
        elif word.startswith('"'):
            operands.append(_Operand("string", json.loads(word)))
        elif word.lstrip("-").isdigit():
            operands.append(_Operand("number", int(word)))
        elif word.startswith("$"):
            name, *fields = word.split(".")
            operands.append(_Operand("var", name, tuple(fields)))
        elif word.startswith("."):
            operands.append(_Operand("field", None, tuple(f for f in word.split(".") if f)))
        elif word.isidentifier():
            operands.append(_Operand("ident", word))
        else:
            raise GoTemplateError(f"unexpected {word!r}")
        at += 1
    return operands, at


def _run(nodes: list[_Node], dot: Any, scope: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _If):
            chosen = next((body for condition, body in node.branches
                           if _truth(_call(condition, dot, scope))), node.otherwise)
            _run(chosen, dot, scope, out)
        elif isinstance(node, _Range):
            _range(node, dot, scope, out)
        else:
            out.append(_text(_call(node, dot, scope)))


def _range(node: _Range, dot: Any, scope: dict[str, Any], out: list[str]) -> None:
    items = _call(node.pipeline, dot, scope)
    if not isinstance(items, list):
        raise GoTemplateError(f"range over {type(items).__name__}")
    for index, item in enumerate(items):
        inner = dict(scope)
        if len(node.variables) == 1:
            inner[node.variables[0]] = item
        elif len(node.variables) == 2:
            inner[node.variables[0]], inner[node.variables[1]] = index, item
        _run(node.body, item, inner, out)


def _call(operands: list[_Operand], dot: Any, scope: dict[str, Any]) -> Any:
    """A command: a function applied to its arguments, or one operand's value."""
    head, args = operands[0], operands[1:]
    if head.kind != "ident":
        if args:
            raise GoTemplateError("only a function takes arguments")
        return _value(head, dot, scope)
    if head.value in ("and", "or"):  # short-circuit, returning the deciding argument, as Go does
        value = None
        for arg in args:
            value = _value(arg, dot, scope)
            if _truth(value) == (head.value == "or"):
                return value
        return value
    values = [_value(arg, dot, scope) for arg in args]
    if head.value == "not" and len(values) == 1:
        return not _truth(values[0])
    if head.value == "eq" and len(values) >= 2:
        return any(_equal(values[0], other) for other in values[1:])
    if head.value == "len" and len(values) == 1 and isinstance(values[0], (str, list, dict)):
        return len(values[0])
    if head.value == "slice" and len(values) in (2, 3) and isinstance(values[0], (str, list)):
        return values[0][values[1]:values[2] if len(values) == 3 else None]
    raise GoTemplateError(f"{head.value} with {len(values)} argument(s) is outside the subset")


def _value(operand: _Operand, dot: Any, scope: dict[str, Any]) -> Any:
    if operand.kind in ("string", "number"):
        return operand.value
    if operand.kind == "group":
        return _call(operand.value, dot, scope)
    if operand.kind == "ident":
        raise GoTemplateError(f"{operand.value} is not a value")
    if operand.kind == "var":
        if operand.value not in scope:
            raise GoTemplateError(f"undefined variable {operand.value}")
        value = scope[operand.value]
    else:
        value = dot
    for name in operand.fields:
        if not isinstance(value, dict) or name not in value:
            raise GoTemplateError(f"can't evaluate field {name}")
        value = value[name]
    return value


def _equal(left: Any, right: Any) -> bool:
    if type(left) is not type(right):
        raise GoTemplateError(f"incompatible types for comparison: {left!r}, {right!r}")
    return left == right


def _truth(value: Any) -> bool:
    """Go's truth: false, 0, "", nil and empty slices and maps are false (as in Python)."""
    return bool(value)


def _text(value: Any) -> str:
    """How ``text/template`` prints a value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    if value is None:
        return "<no value>"
    raise GoTemplateError(f"printing a {type(value).__name__} is outside the subset")
