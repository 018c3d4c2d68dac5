"""Every JSON file distill reads goes through one reader: its own files through their typed record
(``compiler/records``), other tools' files (config.json, tokenizer.json) through
``records.read_json``. ``json.loads`` is left only where the text is not a file distill or another
tool wrote as a record: each place below says what it parses."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("compiler", "runtime", "backends")

PARSERS = {
    "compiler/records/record.py": "read_json: the one reader of a JSON file",
    "compiler/schema.py": "the Distillfile's JSON Schema, package data",
    "compiler/volume.py": "a user's dataset (JSON or JSON Lines), counted at plan time with file:line errors",
    "runtime/sources/datasets.py": "a user's dataset, each row to a typed QAExample with file:line errors",
    "runtime/evaluate/runners.py": "the llama.cpp child's answer line on a pipe",
    "runtime/evaluate/gguf_runner.py": "the parent's request line on a pipe",
    "runtime/synthesis/constrain.py": "a JSON Schema handed over as text, compiled into a grammar",
    "backends/go_template.py": "a Go template's string literal (JSON string syntax)",
}


def json_loads_calls() -> dict[str, int]:
    """Module path -> how many ``json.loads(...)`` calls it makes."""
    found: dict[str, int] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            calls = [node for node in ast.walk(ast.parse(path.read_text("utf-8")))
                     if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                     and node.func.attr == "loads" and isinstance(node.func.value, ast.Name)
                     and node.func.value.id == "json"]
            if calls:
                found[path.relative_to(REPO).as_posix()] = len(calls)
    return found


def test_json_is_parsed_only_by_the_typed_readers_and_the_listed_parsers() -> None:
    found = json_loads_calls()
    assert set(found) <= set(PARSERS), (
        f"json.loads outside the readers: {sorted(set(found) - set(PARSERS))}; read a file with its record's "
        "read() or records.read_json, or list a parser of non-file text here with what it parses")
    assert found["compiler/records/record.py"] == 1


def test_every_listed_parser_still_parses() -> None:
    """A place that no longer calls json.loads leaves the list, so the list stays the truth."""
    assert set(json_loads_calls()) == set(PARSERS)
