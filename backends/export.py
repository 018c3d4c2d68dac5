"""``distill export``: one model folder -> one verified artifact, with errors users can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, cast, get_args, get_type_hints

from distill.backends.base import Artifact, Check, VerificationError, foreign_code
from distill.backends.registry import get_backend
from distill.compiler.errors import DistillError, ExitCode, UsageError
from distill.compiler.records.manifest import MANIFEST, Manifest
from distill.compiler.records.record import read_json
from distill.compiler.spec import GgufQuant, GgufTarget, OnnxTarget


def _quants(target: type[OnnxTarget] | type[GgufTarget], default: str) -> tuple[str, ...]:
    """The quantizations a target's ``quant`` field allows (the spec's Literal), its default first."""
    allowed = get_args(get_type_hints(target)["quant"])
    allowed = get_args(allowed[0]) if allowed[-1] is Ellipsis else allowed  # tuple[GgufQuant, ...]
    return (default, *(quant for quant in allowed if quant != default))


# Quantizations by kind, from the spec's own types; the first is the default. GGUF takes several,
# comma-separated.
_QUANTS = {"onnx": _quants(OnnxTarget, OnnxTarget().quant), "gguf": _quants(GgufTarget, GgufTarget().quant[0])}


class VerificationFailed(DistillError):
    exit_code = ExitCode.VERIFY_FAILED


def parse_target(text: str) -> OnnxTarget | GgufTarget:
    """``onnx[:none|int8]`` or ``gguf[:Q4_K_M[,Q8_0...]]`` -> a target, or a ``UsageError``
    naming what exists."""
    kind, _, quant = text.partition(":")
    if kind not in _QUANTS:
        raise UsageError(f"--to {text}: no backend {kind!r}", hint=f"available: {', '.join(_QUANTS)}")
    quants = quant.split(",") if quant else [_QUANTS[kind][0]]
    unknown = [q for q in quants if q not in _QUANTS[kind]]
    if unknown or (kind == "onnx" and len(quants) > 1):
        raise UsageError(f"--to {text}: {kind} quantizations are {', '.join(_QUANTS[kind])}"
                         + (" (one at a time)" if kind == "onnx" else ""))
    # Each quant is one of the spec's Literal values: checked against _QUANTS above.
    if kind == "gguf":
        return GgufTarget(quant=cast("tuple[GgufQuant, ...]", tuple(dict.fromkeys(quants))))
    return OnnxTarget(quant=cast("Literal['none', 'int8']", quants[0]))


def check_model_dir(model_dir: Path) -> None:
    """A folder transformers can load without running anything it ships: a config.json of a
    model_type transformers implements, and safetensors weights (pickled .bin weights can run
    code when loaded, so distill refuses them)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise UsageError(f"{model_dir} has no config.json", hint="pass a folder saved with save_pretrained()")
    config = read_json(config_path, UsageError)
    reason = foreign_code(model_dir)
    if reason is not None:
        raise UsageError(reason, hint="export a model of a family transformers implements (README: support matrix)")
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in CONFIG_MAPPING_NAMES:
        raise UsageError(f"{config_path}: model_type {model_type!r} is not a family transformers implements",
                         hint="README: support matrix")
    if not any(model_dir.glob("*.safetensors")):
        raise UsageError(f"{model_dir} has no .safetensors weights",
                         hint="distill loads safetensors only; re-save with save_pretrained(safe_serialization=True)")
    for weights in sorted(model_dir.glob("*.safetensors")):
        _check_safetensors(weights)


def _check_safetensors(path: Path) -> None:
    """Its header parses (safetensors reads only the header here, no tensor bytes)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as weights:
            weights.keys()
    except (OSError, SafetensorError) as error:
        raise UsageError(f"{path} is not a readable safetensors file: {error}",
                         hint="re-save the model with save_pretrained(safe_serialization=True)") from None


def export_verified(model_dir: Path, target: OnnxTarget | GgufTarget, out: Path | None
                    ) -> tuple[Artifact, list[Check]]:
    """Export and verify (the backend verifies before anything reaches ``out``); returns the
    artifact and the checks its manifest records."""
    check_model_dir(model_dir)
    kind = "gguf" if isinstance(target, GgufTarget) else "onnx"
    quant = target.quant if isinstance(target.quant, str) else "-".join(target.quant)
    destination = out or Path("dist") / f"{model_dir.resolve().name}-{kind}-{quant}"
    backend = get_backend(kind)
    try:
        artifact = backend.export(model_dir, target, destination)
    except NotImplementedError as refused:  # the backend's support declaration refused this model
        raise UsageError(f"the {kind} backend cannot export {model_dir}: {refused}",
                         hint="README: support matrix") from None
    except VerificationError as failed:
        failures = "; ".join(f"{c.name}: {c.detail}" for c in failed.report.failures())
        raise VerificationFailed(f"the {kind} export of {model_dir} failed verification ({failures})",
                                 hint="nothing was written; rerun with DISTILL_DEBUG=1 for details") from None
    return artifact, list(Manifest.read(artifact.path.parent / MANIFEST).verification)
