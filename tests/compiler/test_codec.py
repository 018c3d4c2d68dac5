"""Spec <-> data round trips and the canonical JSON that spec hashes are taken over."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from jsonschema import Draft202012Validator

from distill.compiler.codec import build_spec, canonical_json, spec_hash, to_data
from distill.compiler.document import parse_document
from distill.compiler.schema import load_schema
from distill.compiler.units import format_size, parse_size
from tests.strategies import valid_data

VALIDATOR = Draft202012Validator(load_schema())
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(valid_data())
def test_spec_round_trips_through_data(data: dict[str, Any]) -> None:
    # Generating whole Distillfiles costs ~25 ms each, so one test checks every round-trip property.
    assert not list(VALIDATOR.iter_errors(data)), "the strategy draws schema-valid data"
    spec = build_spec(data)
    written = to_data(spec)
    assert not list(VALIDATOR.iter_errors(written)), "the canonical form is itself a Distillfile"
    assert build_spec(written) == spec
    assert spec_hash(build_spec(written)) == spec_hash(spec)
    assert canonical_json(build_spec(json.loads(canonical_json(spec)))) == canonical_json(spec)


def test_equivalent_files_hash_the_same() -> None:
    a = """# comment
version: 1
name: x
sources: [{text: a.md}]
student: {model: org/s, adapter: {alpha: 32}}
"""
    b = """student:
  adapter:
    alpha: 32.0     # same number, other spelling
    r: 16           # the default, written out
  model: org/s
sources:
  - text: a.md
name: x
version: 1
"""
    spec_a = build_spec(parse_document(a, "a").data)
    spec_b = build_spec(parse_document(b, "b").data)
    assert spec_a == spec_b
    assert spec_hash(spec_a) == spec_hash(spec_b)
    changed = build_spec(parse_document(b.replace("r: 16", "r: 8"), "c").data)
    assert spec_hash(changed) != spec_hash(spec_a)


def test_canonical_json_is_sorted_and_compact() -> None:
    spec = build_spec({"version": 1, "name": "x", "sources": [{"text": "a"}],
                       "student": {"model": "org/s"}, "hardware": {"vram": "16GiB"}})
    text = canonical_json(spec)
    assert " " not in text.replace("16GiB", "")
    assert json.loads(text)["hardware"]["vram"] == "17179869184B"
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_sizes() -> None:
    assert parse_size("16GiB") == 16 * 1024**3
    assert parse_size("1.5GB") == 1_500_000_000
    assert parse_size("512 MiB") == 512 * 1024**2
    assert format_size(16 * 1024**3) == "16.00 GiB"
    assert format_size(100) == "100 B"
