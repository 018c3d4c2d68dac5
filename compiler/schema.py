"""Shape checks: ``distillfile.schema.json`` via jsonschema, errors turned into located diagnostics.

jsonschema's own messages ("0 is less than or equal to the minimum of 0") name neither the field
nor a fix, so each validator keyword gets a sentence of ours here. A schema node may carry an
``errorMessage`` (ignored by jsonschema) describing what is expected, for patterns and unions.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from distill.compiler.document import DataPath, Document
from distill.compiler.errors import Diagnostic

SCHEMA_FILE = "distillfile.schema.json"


@cache
def load_schema() -> dict[str, Any]:
    """The Distillfile JSON Schema shipped with the package."""
    text = resources.files("distill.compiler").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema())


def dotted(path: DataPath) -> str:
    """``("student", "adapter", "r")`` -> ``student.adapter.r``; list indices as ``sources[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the Distillfile"


def check_shape(doc: Document) -> list[Diagnostic]:
    """Every schema violation in ``doc``, each located and explained."""
    errors = list(_validator().iter_errors(doc.data))
    # A value of the wrong type also fails every other keyword at its path; say only the type.
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    found: list[Diagnostic] = []
    for error in errors:
        if error.validator == "type" or tuple(error.absolute_path) not in mistyped:
            found.extend(_explain(error, doc))
    # jsonschema reports one `required` error per missing key, each carrying the whole list.
    return list(dict.fromkeys(found))


def _explain(error: Any, doc: Document) -> Iterator[Diagnostic]:
    path: DataPath = tuple(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties":
        yield from _unknown_keys(error, doc, path)
    elif kind in ("oneOf", "anyOf"):
        yield from _union(error, doc, path)
    elif kind == "required":
        missing = error.validator_value
        names = [k for k in missing if k not in error.instance]
        for name in names:
            where = "" if not path else f" in {dotted(path)}"
            yield Diagnostic(doc.locate(path), f"missing required key '{name}'{where}",
                             _REQUIRED_HINTS.get(name))
    else:
        yield Diagnostic(doc.locate(path), _sentence(error, path), _hint(error))


_REQUIRED_HINTS = {
    "version": "add `version: 1` at the top",
    "name": "add a name such as `name: my-assistant`; outputs go to dist/<name>/",
    "sources": "add at least one source, e.g. `sources: [{pdf: docs/*.pdf}]`",
    "student": "add the model to train, e.g. `student: {model: Qwen/Qwen2.5-0.5B-Instruct}`",
}


def _unknown_keys(error: Any, doc: Document, path: DataPath) -> Iterator[Diagnostic]:
    known = sorted(error.schema.get("properties", {}))
    for key in error.instance:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = _moved_out_hint(error, doc, path, key) or (
            f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}")
        where = f"in {dotted(path)}" if path else "at the top level"
        yield Diagnostic(doc.locate(path + (key,)), f"unknown key '{key}' {where}", hint)


def _moved_out_hint(error: Any, doc: Document, path: DataPath, key: str) -> str | None:
    """An unknown key right after a section that takes it was meant inside that section: it was
    dedented out of it (``mask:`` at column 1 under ``loss:``), or written after its flow mapping.
    This beats a spelling suggestion: ``revision`` dedented out of ``teacher`` is not ``version``."""
    keys = list(error.instance)
    if keys[0] == key:  # no section above it
        return None
    section = keys[keys.index(key) - 1]
    node = error.schema.get("properties", {}).get(section)
    if node is None:
        return None
    target, value, node = path + (section,), error.instance[section], _resolve(node)
    if isinstance(value, list) and value and "items" in node:  # into the list's last item
        target, value, node = target + (len(value) - 1,), value[-1], _resolve(node["items"])
    if not _takes_key(node, key):
        return None
    meant, head = dotted(target + (key,)), doc.locate(path + (section,))
    if not isinstance(value, dict) or not value:
        return f"did you mean {meant}? indent it under `{section}:` (line {head.line})"
    last = list(value)[-1]
    above = doc.locate(target + (last,))
    if above.line > head.line:
        return f"did you mean {meant}? indent it to column {above.column}, like `{last}:` above it"
    return f"did you mean {meant}? move it into `{section}:` (line {head.line})"


def _takes_key(node: dict[str, Any], key: str) -> bool:
    """Whether an object schema, or any branch of a union, has the property ``key``."""
    node = _resolve(node)
    branches = node.get("oneOf", []) + node.get("anyOf", [])
    return key in node.get("properties", {}) or any(_takes_key(branch, key) for branch in branches)


def _union(error: Any, doc: Document, path: DataPath) -> Iterator[Diagnostic]:
    """For a union whose branches are objects told apart by a required key, explain the errors of
    the branch the user meant; otherwise say what the union accepts."""
    branches = error.schema.get(error.validator, [])
    meant = _branch_meant(branches, error.instance)
    if meant is not None:
        for sub in error.context or []:
            if sub.relative_schema_path and sub.relative_schema_path[0] == meant:
                yield from _explain(sub, doc)
        return
    expected = error.schema.get("errorMessage", "a valid value")
    yield Diagnostic(doc.locate(path), f"{dotted(path)} {_expected(expected)} "
                     f"(got {_show(error.instance)})", _wrap_hint(error.schema, error.instance))


def _branch_meant(branches: list[dict[str, Any]], instance: Any) -> int | None:
    """The one branch an instance was meant for: among object branches, the one whose required
    keys it has; otherwise the one whose declared type it has."""
    resolved = [_resolve(b) for b in branches]
    matching = []
    if isinstance(instance, dict):
        matching = [i for i, b in enumerate(resolved)
                    if "properties" in b and set(b.get("required", ())) <= set(instance)]
    if not matching:
        matching = [i for i, b in enumerate(resolved) if b.get("type") == _json_type(instance)]
    return matching[0] if len(matching) == 1 else None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object",
            type(None): "null"}.get(type(value), "")


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return load_schema()["$defs"][ref.removeprefix("#/$defs/")]
    return node


def _expected(expected: str) -> str:
    return expected if expected.startswith("needs") else f"must be {expected}"


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return f"a mapping with keys {', '.join(value)}" if value else "an empty mapping"
    if isinstance(value, list) and not value:
        return "an empty list"
    text = json.dumps(value, ensure_ascii=False)
    if len(text) <= 60:
        return text
    return f"a list of {len(value)} items" if isinstance(value, list) else text[:57] + "..."


_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string",
               "boolean": "true or false", "object": "a mapping", "array": "a list"}


def _sentence(error: Any, path: DataPath) -> str:
    """``student.adapter.r must be > 0 (got 0)``, phrased per jsonschema keyword."""
    kind, bound = error.validator, error.validator_value
    name, got = dotted(path), _show(error.instance)
    if kind == "type":
        wanted: list[str] = bound if isinstance(bound, list) else [bound]
        return f"{name} must be {' or '.join(_TYPE_WORDS.get(t, t) for t in wanted)} (got {got})"
    if "errorMessage" in error.schema and kind not in ("enum", "const"):
        return f"{name} {_expected(error.schema['errorMessage'])} (got {got})"
    phrase = _phrase(kind, bound)
    if phrase is None:
        return f"{name}: {error.message}"
    return f"{name} must be {phrase} (got {got})"


def _phrase(kind: str, bound: Any) -> str | None:
    plural = "s" if bound != 1 else ""
    match kind:
        case "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum":
            return f"{_COMPARISONS[kind]} {bound}"
        case "const":
            return _show(bound)
        case "enum":
            return "one of " + ", ".join(_show(v) for v in bound)
        case "minItems":
            return f"a list of at least {bound} item{plural}"
        case "uniqueItems":
            return "a list without repeated items"
        case "minLength":
            return "a non-empty string"
        case "minProperties":
            return f"a mapping with at least {bound} key{plural}"
        case "maxProperties":
            return f"a mapping with at most {bound} key{plural}"
        case "pattern":
            return f"text matching {bound}"
    return None


_COMPARISONS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def _hint(error: Any) -> str | None:
    if error.validator == "enum" and isinstance(error.instance, str):
        options = [str(v) for v in error.validator_value]
        close = difflib.get_close_matches(error.instance, options, n=1, cutoff=0.75)
        if close:
            return f"did you mean '{close[0]}'?"
    if error.validator == "const" and tuple(error.absolute_path) == ("version",):
        return "this distill understands version 1 only"
    if error.validator == "enum" and True in error.validator_value and \
            str(error.instance).lower() in _YAML11_BOOLEANS:
        return "YAML 1.2 reads yes/no/on/off as text; write true or false"
    if error.validator == "type":
        return _wrap_hint(error.schema, error.instance)
    return None


_YAML11_BOOLEANS = {"yes", "no", "on", "off", "y", "n"}


def _wrap_hint(schema: dict[str, Any], value: Any) -> str | None:
    """For a bare string where a mapping keyed by one of a few names belongs, show the mapping
    (``teacher: gpt2`` -> ``teacher: {model: gpt2}``)."""
    if not isinstance(value, str):
        return None
    keys = []
    for branch in map(_resolve, schema.get("oneOf", [])):
        properties = branch.get("properties") or schema.get("properties", {})
        keys += [key for key in branch.get("required", [])
                 if _resolve(properties.get(key, {})).get("type") == "string"]
    if not keys:
        return None
    forms = [f"{{{key}: {value}}}" for key in keys]
    return "write it as " + (forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1])
