"""The JSON Schema and the Spec dataclasses describe one language: same objects, same fields, same
types and same defaults. Adding a property to one and not the other fails here."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Literal, Union, get_args, get_origin

import pytest

from distill.compiler import spec as spec_module
from distill.compiler.codec import _convert
from distill.compiler.schema import load_schema
from distill.compiler.units import ByteSize, LayerMap

SCHEMA = load_schema()
DEFS = SCHEMA["$defs"]
SPEC_CLASSES = {name: cls for name, cls in inspect.getmembers(spec_module, dataclasses.is_dataclass)}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = DEFS[node["$ref"].removeprefix("#/$defs/")]
    return node


def _schema_kinds(node: dict[str, Any]) -> set[str]:
    """What values a schema node admits, as comparable tokens."""
    ref = node.get("$ref", "").removeprefix("#/$defs/")
    if ref in SPEC_CLASSES:
        return {ref}
    node = _resolve(node)
    if "enum" in node:
        return {repr(v) for v in node["enum"]}
    if "const" in node:
        return {repr(node["const"])}
    branches = node.get("oneOf") or node.get("anyOf")
    if branches and "properties" not in node:
        return set().union(*(_schema_kinds(b) for b in branches))
    kind = node["type"]
    if kind == "array":
        return {f"list[{','.join(sorted(_schema_kinds(node['items'])))}]"}
    if kind == "object":
        return {"map"}
    return {{"integer": "int", "number": "float", "string": "str", "boolean": "bool"}[kind]}


def _hint_kinds(tp: Any) -> set[str]:
    """What Distillfile values a Spec field type stands for, as the same tokens."""
    origin = get_origin(tp)
    if origin in (Union, typing.Union) or isinstance(tp, type(int | None)):
        return set().union(*(_hint_kinds(m) for m in get_args(tp) if m is not type(None)))
    if origin is Literal:
        return {repr(a) for a in get_args(tp)}
    if origin is typing.Annotated:
        codec = tp.__metadata__[0]
        return {ByteSize: {"str"}, LayerMap: {"map"}}[codec]
    if origin is tuple:
        return {f"list[{','.join(sorted(_hint_kinds(get_args(tp)[0])))}]"}
    if dataclasses.is_dataclass(tp):
        return {tp.__name__}
    return {tp.__name__}


def test_every_object_def_is_a_spec_class_and_back() -> None:
    object_defs = {name for name, node in DEFS.items() if "properties" in node}
    assert object_defs == set(SPEC_CLASSES)


@pytest.mark.parametrize("name", sorted(SPEC_CLASSES))
def test_fields_are_the_properties(name: str) -> None:
    fields = [f.name for f in dataclasses.fields(SPEC_CLASSES[name])]
    assert set(fields) == set(DEFS[name]["properties"])


@pytest.mark.parametrize("name", sorted(SPEC_CLASSES))
def test_required_properties_are_fields_without_default(name: str) -> None:
    without_default = {f.name for f in dataclasses.fields(SPEC_CLASSES[name])
                       if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert without_default == set(DEFS[name].get("required", []))


def _fields() -> list[tuple[str, str]]:
    return [(name, f.name) for name, cls in sorted(SPEC_CLASSES.items())
            for f in dataclasses.fields(cls)]


@pytest.mark.parametrize(("name", "field"), _fields())
def test_types_agree(name: str, field: str) -> None:
    hint = typing.get_type_hints(SPEC_CLASSES[name], include_extras=True)[field]
    assert _hint_kinds(hint) == _schema_kinds(DEFS[name]["properties"][field])


@pytest.mark.parametrize(("name", "field"), _fields())
def test_defaults_agree(name: str, field: str) -> None:
    cls = SPEC_CLASSES[name]
    spec_field = next(f for f in dataclasses.fields(cls) if f.name == field)
    node = DEFS[name]["properties"][field]
    schema_default = node.get("default", _resolve(node).get("default", dataclasses.MISSING))
    if spec_field.default_factory is not dataclasses.MISSING:
        spec_default = spec_field.default_factory()
    else:
        spec_default = spec_field.default
    if spec_default is None or spec_default is dataclasses.MISSING:
        assert schema_default is dataclasses.MISSING, "an optional field has no schema default"
        return
    hint = typing.get_type_hints(cls, include_extras=True)[field]
    assert _convert(hint, schema_default) == spec_default


def _property_nodes(node: Any, where: str = "") -> typing.Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for key, child in node.get("properties", {}).items():
            yield f"{where}.{key}", child
        for key, child in node.items():
            yield from _property_nodes(child, f"{where}/{key}")
    elif isinstance(node, list):
        for child in node:
            yield from _property_nodes(child, where)


@pytest.mark.parametrize(("where", "node"), list(_property_nodes(DEFS)), ids=lambda v: str(v)[:60])
def test_every_property_has_a_description(where: str, node: dict[str, Any]) -> None:
    assert node.get("description") or _resolve(node).get("description")


def test_every_object_rejects_unknown_keys() -> None:
    objects = [name for name, node in DEFS.items() if node.get("type") == "object" and "properties" in node]
    assert objects and all(DEFS[name]["additionalProperties"] is False for name in objects)


def test_schema_is_valid_2020_12_and_requires_version() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(SCHEMA)
    assert "version" in DEFS["Spec"]["required"]
