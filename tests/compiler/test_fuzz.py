"""Mutated Distillfiles never crash the compiler: every outcome is a valid Spec or located errors."""

from __future__ import annotations

import copy
import io
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from distill.compiler.document import parse_document
from distill.compiler.errors import SpecError
from distill.compiler.frontend import compile_file
from tests.conftest import EXAMPLES
from tests.strategies import anything, data_paths, parent_of


@pytest.fixture(scope="module")
def seeds() -> list[tuple[Path, str]]:
    """Each example copied to a temp folder (with its data files), and its text."""
    root = Path(tempfile.mkdtemp(prefix="distill-fuzz-"))
    out = []
    for example in EXAMPLES:
        folder = root / example.parent.name
        shutil.copytree(example.parent, folder, ignore=shutil.ignore_patterns(".distill", "dist"))
        out.append((folder, example.read_text()))
    yield out
    shutil.rmtree(root)


@st.composite
def data_mutation(draw: st.DrawFn, text: str) -> str:
    data = copy.deepcopy(parse_document(text, "seed").data)
    for _ in range(draw(st.integers(1, 3))):
        paths = data_paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = parent_of(data, path), path[-1]
        op = draw(st.sampled_from(["delete", "replace", "rename", "insert"]))
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = draw(anything)
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = parent.pop(last)
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(anything)
        else:
            parent.insert(last, draw(anything))
    buffer = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, buffer)
    return buffer.getvalue()


@st.composite
def text_mutation(draw: st.DrawFn, text: str) -> str:
    op = draw(st.sampled_from(["insert", "delete", "replace", "yaml"]))
    at = draw(st.integers(0, len(text)))
    if op == "insert":
        return text[:at] + draw(st.text(max_size=8)) + text[at:]
    if op == "delete":
        return text[:at] + text[at + draw(st.integers(1, 40)):]
    if op == "replace":
        return draw(st.text(max_size=60))
    buffer = io.StringIO()
    YAML(typ="safe", pure=True).dump(draw(anything), buffer)
    return buffer.getvalue()


@settings(max_examples=2000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(st.data())
def test_mutated_files_give_a_spec_or_located_errors(seeds: list[tuple[Path, str]],
                                                     data: st.DataObject) -> None:
    folder, seed = data.draw(st.sampled_from(seeds))
    mutate = data.draw(st.sampled_from([data_mutation, text_mutation]))
    text = data.draw(mutate(seed))
    path = folder / "Mutated"
    path.write_text(text, encoding="utf-8")
    try:
        compile_file(path)
    except SpecError as error:
        assert error.diagnostics
        lines = text.count("\n") + 2
        for diagnostic in error.diagnostics:
            where = diagnostic.location
            assert where.file == str(path)
            assert 1 <= where.line <= lines and where.column >= 1, diagnostic
            assert diagnostic.message.strip()
