"""The backend interface: export a saved Hugging Face model folder to a deployment format, then
verify the result against the source model.

One small ``Protocol`` and a registry dict; backends are plain classes (no inheritance), looked up
by the deploy target's kind (``"onnx"``, later ``"gguf"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from distill.compiler.digest import digest_file
from distill.compiler.errors import DistillError
from distill.compiler.fsutil import staged_folder
from distill.compiler.records.manifest import Check, ExportSource
from distill.compiler.records.record import read_json
from distill.compiler.spec import GgufTarget, OnnxTarget

Target = OnnxTarget | GgufTarget
# The deploy target a backend takes (contravariant: a backend of ONNX targets is asked for ONNX only).
TargetT = TypeVar("TargetT", OnnxTarget, GgufTarget, contravariant=True)


@dataclass(frozen=True)
class Artifact:
    """One exported model file.

    Attributes:
        path: the model file (``model.onnx``); ``manifest.json`` sits beside it.
        kind: the backend name (``"onnx"``).
        quant: the quantization (``"none"`` or ``"int8"`` for ONNX).
        sha256: hex digest of the model file.
        size: bytes of the model file plus any external-data files beside it.
        extra: backend-specific facts (task, opset, ...), JSON-serializable.
    """

    path: Path
    kind: str
    quant: str
    sha256: str
    size: int
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifyReport:
    """Every check run on an artifact; it passes only when all of them do."""

    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)


class VerificationError(RuntimeError):
    """An export whose verification failed; nothing was written at the destination."""

    def __init__(self, report: VerifyReport) -> None:
        lines = "; ".join(f"{c.name}: {c.detail}" for c in report.failures())
        super().__init__(f"exported model failed verification: {lines}")
        self.report = report


class Backend(Protocol[TargetT]):
    """What a deployment backend provides, for its kind of deploy target."""

    def export(self, model_dir: Path, target: TargetT, out_dir: Path) -> Artifact:
        """Export the saved model at ``model_dir`` into ``out_dir`` (atomically: verified before
        it appears there); raises :class:`VerificationError` when verification fails."""
        ...

    def verify(self, artifact: Artifact, model_dir: Path) -> VerifyReport:
        """Compare ``artifact`` with the source model at ``model_dir``."""
        ...


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file (streamed, as the lock's digests are)."""
    return digest_file(path, path.name).sha256


def export_source(model_dir: Path) -> ExportSource:
    """The model folder an export was made from, for its manifest."""
    return ExportSource(model_dir=str(model_dir.resolve()), config_sha256=sha256_file(model_dir / "config.json"))


def foreign_code(model_dir: Path) -> str | None:
    """Why loading ``model_dir`` would need code the folder ships, or ``None``.

    A config.json or tokenizer_config.json with an ``auto_map`` names Python files in the folder;
    transformers runs them (after asking on a terminal) unless the ``model_type`` is one it
    implements itself, in which case ``trust_remote_code=False`` loads its own classes and the
    folder's code never runs. distill loads with ``trust_remote_code=False`` everywhere, so such a
    folder is refused here, with a reason, instead of failing inside transformers.
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    mapped: dict[str, Any] = {}
    model_type = None
    for name in ("config.json", "tokenizer_config.json"):
        try:
            data = read_json(model_dir / name)
        except DistillError:
            continue  # a missing or unreadable file is reported where it is needed
        if isinstance(data, dict):
            model_type = model_type or (data.get("model_type") if name == "config.json" else None)
            if isinstance(data.get("auto_map"), dict):
                mapped.update(data["auto_map"])
    if not mapped or model_type in CONFIG_MAPPING_NAMES:
        return None
    code = ", ".join(sorted({str(v[0] if isinstance(v, list) else v) for v in mapped.values()}))
    return (f"{model_dir} needs code it ships ({code}) for model_type {model_type!r}, which transformers "
            "does not implement; distill never runs code from a model folder")


def load_reference(auto_class: Any, model_dir: Path) -> Any:
    """The source model in fp32, eval mode, with eager attention: what every backend's
    verification compares against. Eager is the plain-math attention; the default sdpa silently
    drops Gemma-2's attention soft-capping (measured: logits 0.11 apart at a cap of 0.05)."""
    import torch

    return auto_class.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager",
                                      trust_remote_code=False).eval()


def export_atomically(out_dir: Path, build: Callable[[Path], Artifact],
                      verify: Callable[[Artifact], VerifyReport],
                      write_manifest: Callable[[Path, Artifact, VerifyReport], None]) -> None:
    """Build an export in a temp folder beside ``out_dir``, verify it there, write its manifest,
    then rename it into place. A failed verification raises ``VerificationError`` and leaves
    ``out_dir`` as it was; the temp folder never survives."""
    with staged_folder(out_dir) as tmp:
        staged = build(tmp)
        report = verify(staged)
        if not report.passed:
            raise VerificationError(report)
        write_manifest(tmp, staged, report)
