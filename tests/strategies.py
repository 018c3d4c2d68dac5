"""Hypothesis strategies for Distillfiles: schema-valid data drawn from distillfile.schema.json
itself (so new properties are covered without touching tests), and mutations of valid files."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from distill.compiler.schema import load_schema

DEFS = load_schema()["$defs"]
_BIG = 10**6  # upper bound for otherwise unbounded numbers: keeps examples readable


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = DEFS[node["$ref"].removeprefix("#/$defs/")]
    return node


def valid_data(node: dict[str, Any] | None = None) -> st.SearchStrategy[Any]:
    """Values that satisfy the schema node (the whole Distillfile by default)."""
    node = _resolve(node if node is not None else {"$ref": "#/$defs/Spec"})
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "properties" in node:
        return _objects(node)
    branches = node.get("oneOf") or node.get("anyOf")
    if branches:
        return st.one_of([valid_data(b) for b in branches])
    return _TYPED[node["type"]](node)


def _objects(node: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = node["properties"]
    required = set(node.get("required", []))
    # Objects like Teacher take exactly one of some keys: `oneOf: [{required: [model]}, ...]`.
    exclusive = [b["required"] for b in node.get("oneOf", []) if set(b) == {"required"}]
    at_most = node.get("maxProperties", len(properties))

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        chosen = set(required)
        optional = sorted(set(properties) - required - {k for keys in exclusive for k in keys})
        if exclusive:
            chosen |= set(draw(st.sampled_from(exclusive)))
        if at_most == 1:
            chosen = {draw(st.sampled_from(sorted(properties)))}
        else:
            chosen |= {k for k in optional if draw(st.booleans())}
        return {key: draw(valid_data(properties[key])) for key in sorted(chosen)}

    return build()


def _integers(node: dict[str, Any]) -> st.SearchStrategy[int]:
    low = node.get("minimum", node.get("exclusiveMinimum", -_BIG - 1) + 1)
    return st.integers(low, min(node.get("maximum", _BIG), low + _BIG))


def _numbers(node: dict[str, Any]) -> st.SearchStrategy[float]:
    low = node.get("minimum", node.get("exclusiveMinimum", 0))
    high = node.get("maximum", node.get("exclusiveMaximum", _BIG))
    return st.floats(low, high, exclude_min="exclusiveMinimum" in node,
                     exclude_max="exclusiveMaximum" in node, allow_nan=False)


def _strings(node: dict[str, Any]) -> st.SearchStrategy[str]:
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True)
    return st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)),
                   min_size=node.get("minLength", 0), max_size=24)


def _arrays(node: dict[str, Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(valid_data(node["items"]), min_size=node.get("minItems", 0), max_size=3,
                    unique_by=(lambda v: repr(v)) if node.get("uniqueItems") else None)


def _maps(node: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    keys = _strings(node.get("propertyNames", {"type": "string"}))
    return st.dictionaries(keys, valid_data(node["additionalProperties"]),
                           min_size=node.get("minProperties", 0), max_size=3)


_TYPED = {
    "integer": _integers, "number": _numbers, "string": _strings, "boolean": lambda _: st.booleans(),
    "array": _arrays, "object": _maps,
}

# Arbitrary YAML-able values for mutations: scalars of every kind, and small lists and mappings.
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
anything = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6)


def data_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in parsed YAML data (dict keys and list indexes), parents before children."""
    found = [prefix] if prefix else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found += data_paths(child, prefix + (key,))
    return found


def parent_of(data: Any, path: tuple[Any, ...]) -> Any:
    """The container that holds the value at ``path``."""
    for part in path[:-1]:
        data = data[part]
    return data
