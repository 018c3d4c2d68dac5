"""Schema-valid data <-> Spec, and the canonical JSON that Spec hashes are taken over.

Conversion is driven by the Spec's type hints, so a field added to ``compiler/spec.py`` (and the
schema) needs no code here. Only data that passed ``distillfile.schema.json`` reaches ``build``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

from distill.compiler.spec import Spec
from distill.compiler.units import Codec


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def build_spec(data: dict[str, Any]) -> Spec:
    """A Spec from schema-valid Distillfile data; unset fields take the Spec's defaults."""
    return _build(Spec, data)


def _build(cls: type, data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    kwargs = {f.name: _convert(hints[f.name], data[f.name])
              for f in dataclasses.fields(cls) if f.name in data}
    return cls(**kwargs)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _codec(tp).parse(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value)
    if origin in (Union, types.UnionType):
        return _convert(_pick_member(tp, value), value)
    if origin is tuple:
        item = get_args(tp)[0]
        return tuple(_convert(item, v) for v in value)
    if tp is float:
        return float(value)  # YAML `2` and `2.0` must build (and hash) the same Spec
    return value


def _pick_member(tp: Any, value: Any) -> Any:
    """The member of a union that schema-valid ``value`` belongs to."""
    members = [m for m in get_args(tp) if m is not type(None)]
    if len(members) == 1:
        return members[0]
    for member in members:
        if get_origin(member) is Literal:
            if value in get_args(member) and type(value) in {type(a) for a in get_args(member)}:
                return member
        elif get_origin(member) is typing.Annotated:
            return member  # holds data in its Distillfile form (a size string, a mapping)
        elif dataclasses.is_dataclass(member):
            # Unions of dataclasses are told apart by their first field, which the schema requires.
            if isinstance(value, dict) and dataclasses.fields(member)[0].name in value:
                return member
        elif isinstance(value, _python_type(member)) and not (
                isinstance(value, bool) and member is not bool):
            return member
    raise TypeError(f"{value!r} fits no member of {tp}")  # unreachable for schema-valid data


def _python_type(tp: Any) -> type | tuple[type, ...]:
    """What ``isinstance`` takes to recognize data of ``tp``."""
    if get_origin(tp) is tuple:
        # Not dict: a mapping beside a list is a dataclass member (``layers: [0, 2]`` or ``{every: 2}``).
        return (list, tuple)
    return (int, float) if tp is float else tp


def to_data(obj: Any) -> Any:
    """The Distillfile data a Spec (or part of one) stands for, with every default written out.

    Fields that are ``None`` are left out, so the result validates against the schema and
    ``build_spec(to_data(spec)) == spec``.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        hints = _hints(type(obj))
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None:
                continue
            out[f.name] = _dump(hints[f.name], value)
        return out
    if isinstance(obj, tuple):
        return [to_data(v) for v in obj]
    return obj


def _codec(annotated: Any) -> Codec:
    """The codec an ``Annotated`` Spec field carries as its metadata."""
    codec: Codec = annotated.__metadata__[0]
    return codec


def _dump(tp: Any, value: Any) -> Any:
    for member in _members(tp):
        if get_origin(member) is typing.Annotated and not isinstance(value, str):
            return _codec(member).dump(value)
    return to_data(value)


def _members(tp: Any) -> tuple[Any, ...]:
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return (tp,)


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, defaults written out. Two Distillfiles that
    mean the same thing (key order, comments, `2` vs `2.0`, omitted defaults) give the same text."""
    return json.dumps(to_data(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_not_data)


def _not_data(value: Any) -> Any:
    """json's hook for a value that is not JSON data. The message formats the value, so a value
    that refuses to be read (a field a build stage's view withholds) raises its own error, which
    names the stage and the field, rather than json's TypeError."""
    raise TypeError(f"{type(value).__name__} is not JSON data: {value}")


def spec_hash(obj: Any) -> str:
    """sha256 hex digest of the canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()
