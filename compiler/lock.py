"""Distillfile.lock: the inputs and decisions of a build, pinned compactly (as uv.lock and
Cargo.lock pin theirs), for a reviewer to read in a diff.

It records the spec hash, the sha256 and size of every source file and model file, resolved model
revisions and tokenizer identities, the settings the planner chose (values, no prose: the
arithmetic behind them is what ``distill plan`` prints) with the predicted peak, and tool versions.
Time estimates are left out: they depend on a throughput measured at plan time. What a build
produced is recorded beside its artifacts (``dist/<name>/build.json``), not here.

``distill plan --check`` rebuilds the lock in memory and fails, naming each change as old -> new,
when the file on disk differs.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from dataclasses import fields
from importlib import metadata
from pathlib import Path
from typing import Any

from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.fsutil import write_atomic
from distill.compiler.plan import Plan
from distill.compiler.records.lock import Lock, LockedModel
from distill.compiler.records.record import RecordError
from distill.compiler.resolve import ResolvedModel
from distill.compiler.volume import DataVolume

TOOLS = ("distill", "torch", "transformers", "tokenizers", "peft", "accelerate", "bitsandbytes",
         "datasets", "optimum", "optimum-onnx", "onnxruntime", "gguf", "llama-cpp-python", "pypdf",
         "pytesseract", "safetensors")
# Plan fields that are explanation or derived detail, not settings: the decisions' prose and the
# memory terms print in `distill plan`; the model summaries repeat what `models` pins.
_NOT_SETTINGS = frozenset({"models", "decisions", "phases", "data_note", "estimates"})
_SHOWN_CHARS = 40  # a changed value longer than this is cut in `plan --check`'s message


class StaleLock(DistillError):
    exit_code = ExitCode.STALE_LOCK


def lock_path(distillfile: Path) -> Path:
    return distillfile.with_name(distillfile.name + ".lock")


def build_lock(spec_hash: str, models: Mapping[str, ResolvedModel], volume: DataVolume, plan: Plan) -> Lock:
    return Lock(
        spec_sha256=spec_hash,
        sources=tuple(volume.files),
        models={role: LockedModel(m.kind, m.ref, m.revision, m.tokenizer,
                                  tuple(m.files))
                for role, m in sorted(models.items())},
        settings=settings(plan),
        tools=tool_versions(),
    )


def settings(plan: Plan) -> dict[str, Any]:
    """The plan's chosen values, one per key, and its predicted peak."""
    chosen = {f.name: getattr(plan, f.name) for f in fields(plan) if f.name not in _NOT_SETTINGS}
    chosen = {name: list(value) if isinstance(value, tuple) else value for name, value in chosen.items()}
    return {**chosen, "peak_phase": plan.peak.phase, "peak_bytes": plan.peak.bytes}


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def lock_sha256(lock: Lock) -> str:
    """What a build record names its lock by: the sha256 of the file's text."""
    return hashlib.sha256(lock.to_json().encode("utf-8")).hexdigest()


def write_lock(path: Path, lock: Lock) -> bool:
    """Write the lock unless the file already says exactly this; returns whether it wrote (a build
    of an unchanged plan leaves a committed lock, and its mtime, alone)."""
    text = lock.to_json()
    try:
        if path.read_text("utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_atomic(path, text)
    return True


def check_lock(path: Path, lock: Lock) -> None:
    """Raise ``StaleLock`` naming every difference between the lock on disk and ``lock``."""
    if not path.is_file():
        raise StaleLock(f"{path} does not exist", hint="run `distill plan` and commit the lock")
    try:
        old = Lock.read(path)
    except RecordError as error:
        raise StaleLock(error.message, hint="run `distill plan` to rewrite it, and commit the new lock") from None
    changes = differences(old.to_data(), lock.to_data())
    if changes:
        shown = changes[:20] + ([f"and {len(changes) - 20} more"] if len(changes) > 20 else [])
        raise StaleLock(f"{path} is stale:\n" + "\n".join(f"  {line}" for line in shown),
                        hint="run `distill plan` and commit the new lock")


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Each path where two lock trees differ, as ``path: old -> new`` (files matched by path)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            inner = f"{where}.{key}" if where else key
            if key not in old:
                found.append(f"{inner} added: {_shown(new[key])}")
            elif key not in new:
                found.append(f"{inner} removed (was {_shown(old[key])})")
            else:
                found += differences(old[key], new[key], inner)
        return found
    if isinstance(old, list) and isinstance(new, list) and all(isinstance(x, dict) and "path" in x for x in old + new):
        return differences({x["path"]: x for x in old}, {x["path"]: x for x in new}, where)
    return [] if old == new else [f"{where}: {_shown(old)} -> {_shown(new)}"]


def _shown(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a sha256, shortened as git shortens commits
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS - 3] + "..."
