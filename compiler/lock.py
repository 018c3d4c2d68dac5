"""Distillfile.lock: a saved plan (as Terraform saves one) with every input pinned.

It records the spec hash, the sha256 and size of every source file and model file, resolved model
revisions, the plan's decisions and predictions, and tool versions. Time estimates are left out:
they depend on a throughput measured at plan time. ``distill plan --check`` rebuilds the lock in
memory and fails, naming what changed, when the file on disk differs.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from distill.compiler.codec import to_data
from distill.compiler.errors import DistillError, ExitCode
from distill.compiler.fsutil import write_atomic
from distill.compiler.plan import Plan
from distill.compiler.resolve import ResolvedModel
from distill.compiler.volume import DataVolume

LOCK_VERSION = 1
TOOLS = ("distill", "torch", "transformers", "tokenizers", "peft", "accelerate", "bitsandbytes",
         "datasets", "optimum", "optimum-onnx", "onnxruntime", "gguf", "llama-cpp-python", "pypdf",
         "pytesseract", "safetensors")


BUILD = "build"


class StaleLock(DistillError):
    exit_code = ExitCode.STALE_LOCK


def lock_path(distillfile: Path) -> Path:
    return distillfile.with_name(distillfile.name + ".lock")


def build_lock(spec_hash: str, models: dict[str, ResolvedModel], volume: DataVolume, plan: Plan) -> dict[str, Any]:
    plan_data = to_data(plan)
    plan_data.pop("estimates", None)
    return {
        "lock_version": LOCK_VERSION,
        "spec_sha256": spec_hash,
        "sources": [asdict(f) for f in volume.files],
        "models": {role: {"kind": m.kind, "ref": m.ref, "revision": m.revision, "tokenizer": m.tokenizer,
                          "files": [asdict(f) for f in m.files]} for role, m in sorted(models.items())},
        "plan": plan_data,
        "tools": tool_versions(),
    }


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def with_build(lock: dict[str, Any], build: dict[str, Any]) -> dict[str, Any]:
    """The lock plus what a build produced from it (stage keys, the synthesized data's hash,
    output hashes): ``plan --check`` and ``build --locked`` compare everything but this."""
    return {**lock, BUILD: build}


def lock_text(lock: dict[str, Any]) -> str:
    return json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_lock(path: Path, lock: dict[str, Any]) -> None:
    write_atomic(path, lock_text(lock))


def check_lock(path: Path, lock: dict[str, Any]) -> None:
    """Raise ``StaleLock`` naming every difference between the lock on disk and ``lock``."""
    if not path.is_file():
        raise StaleLock(f"{path} does not exist", hint="run `distill plan` and commit the lock")
    try:
        old = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise StaleLock(f"{path} cannot be read: {exc}", hint="run `distill plan` to rewrite it") from None
    if isinstance(old, dict):
        old.pop(BUILD, None)  # what the last build produced: outputs, not inputs
    changes = list(differences(old, lock))
    if changes:
        shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise StaleLock(f"{path} is stale: {shown}", hint="run `distill plan` and commit the new lock")


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Human-readable paths where two lock trees differ (sources and files matched by path)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            inner = f"{where}.{key}" if where else key
            if key not in old:
                found.append(f"{inner} added")
            elif key not in new:
                found.append(f"{inner} removed")
            else:
                found += differences(old[key], new[key], inner)
        return found
    if isinstance(old, list) and isinstance(new, list) and all(isinstance(x, dict) and "path" in x for x in old + new):
        return differences({x["path"]: x for x in old}, {x["path"]: x for x in new}, where)
    return [] if old == new else [f"{where} changed"]
