"""``Distillfile.lock``: the inputs and decisions of a build, pinned (``compiler/lock.py`` builds,
writes and checks it)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from distill.compiler.digest import FileDigest
from distill.compiler.records.record import Record


@dataclass(frozen=True)
class LockedModel:
    """A resolved model: how it was found (local, hub, gguf, random, cut), its reference and
    revision, its tokenizer's identity and its files."""

    kind: str
    ref: str
    revision: str | None
    tokenizer: str | None
    files: tuple[FileDigest, ...]


@dataclass(frozen=True)
class Lock(Record):
    """``settings``: the plan's chosen values, one per key, with its predicted peak (values, no
    prose: the arithmetic behind them is what ``distill plan`` prints); ``tools``: the versions of
    distill and the libraries it runs."""

    KIND: ClassVar[str] = "lock"
    VERSION: ClassVar[int] = 3

    spec_sha256: str
    sources: tuple[FileDigest, ...]
    models: dict[str, LockedModel]
    settings: dict[str, Any]
    tools: dict[str, str]

    def to_json(self) -> str:
        """One line per setting and one line per file record, so that a changed value is a changed
        line in a reviewer's diff (``json.dumps(indent=2)`` spreads each record over five)."""
        return _render(self.to_data(), "") + "\n"


def _render(value: Any, indent: str) -> str:
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(key)}: {_render(value[key], inner)}" for key in sorted(value)]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        records = [inner + json.dumps(item, sort_keys=True, ensure_ascii=False) for item in value]
        return "[\n" + ",\n".join(records) + f"\n{indent}]"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
