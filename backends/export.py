"""``distill export``: one model folder -> one verified artifact, with errors users can act on."""

from __future__ import annotations

import json
from pathlib import Path

from distill.backends.base import Artifact, Check, VerificationError, get_backend
from distill.compiler.errors import DistillError, ExitCode, UsageError
from distill.compiler.spec import OnnxTarget

# Target parsers by kind: "onnx" or "onnx:int8" -> OnnxTarget. GGUF joins when its backend does.
_QUANTS = {"onnx": ("none", "int8")}


class VerificationFailed(DistillError):
    exit_code = ExitCode.VERIFY_FAILED


def parse_target(text: str) -> OnnxTarget:
    """``KIND[:QUANT]`` -> a target, or a ``UsageError`` naming what exists."""
    kind, _, quant = text.partition(":")
    if kind not in _QUANTS:
        raise UsageError(f"--to {text}: no backend {kind!r} yet", hint=f"available: {', '.join(_QUANTS)}")
    quant = quant or _QUANTS[kind][0]
    if quant not in _QUANTS[kind]:
        raise UsageError(f"--to {text}: {kind} quantizations are {', '.join(_QUANTS[kind])}")
    return OnnxTarget(quant=quant)  # type: ignore[arg-type]


def check_model_dir(model_dir: Path) -> None:
    """A folder with config.json and safetensors weights: pickled .bin weights can run code when
    loaded, so distill refuses them."""
    if not (model_dir / "config.json").is_file():
        raise UsageError(f"{model_dir} has no config.json", hint="pass a folder saved with save_pretrained()")
    if not any(model_dir.glob("*.safetensors")):
        raise UsageError(f"{model_dir} has no .safetensors weights",
                         hint="distill loads safetensors only; re-save with save_pretrained(safe_serialization=True)")


def export_verified(model_dir: Path, to: str, out: Path | None) -> tuple[Artifact, list[Check]]:
    """Export and verify (the backend verifies before anything reaches ``out``); returns the
    artifact and the checks its manifest records."""
    target = parse_target(to)
    check_model_dir(model_dir)
    kind = to.partition(":")[0]
    destination = out or Path("dist") / f"{model_dir.resolve().name}-{kind}-{target.quant}"
    backend = get_backend(kind)
    try:
        artifact = backend.export(model_dir, target, destination)
    except VerificationError as failed:
        failures = "; ".join(f"{c.name}: {c.detail}" for c in failed.report.failures())
        raise VerificationFailed(f"the {kind} export of {model_dir} failed verification ({failures})",
                                 hint="nothing was written; rerun with DISTILL_DEBUG=1 for details") from None
    manifest = json.loads((artifact.path.parent / "manifest.json").read_text("utf-8"))
    return artifact, [Check(c["name"], c["passed"], c["detail"]) for c in manifest["verification"]]
