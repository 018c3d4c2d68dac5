"""``manifest.json``, beside every exported artifact: what was exported, from which model, with
which tools, and every verification check it passed. Written by the backend that exported it;
read by the build (candidates, report), ``distill chat`` and ``distill inspect``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from distill.compiler.records.record import Record

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Check:
    """One verification check: its name, whether it passed, and the measured numbers."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class ArtifactFile:
    """A file of the export: GGUF files name their quantization, their tensors' types (type ->
    count) and their Ollama Modelfile."""

    path: str
    sha256: str
    size: int
    quant: str | None = None
    tensor_types: dict[str, int] | None = None
    modelfile: str | None = None


@dataclass(frozen=True)
class ExportSource:
    """The model folder exported, and its config's sha256."""

    model_dir: str
    config_sha256: str


@dataclass(frozen=True)
class OllamaChat:
    """The Modelfiles' chat format (a TEMPLATE name), or why they have none."""

    template: str | None
    warning: str | None


@dataclass(frozen=True)
class Manifest(Record):
    """One export folder. ``model`` and ``quant`` are its first model file; a GGUF export holds
    one file per ``quants`` entry (``files``), an ONNX export one model with its external data."""

    KIND: ClassVar[str] = "manifest"
    VERSION: ClassVar[int] = 2

    kind: Literal["gguf", "onnx"]
    model: str
    quant: str
    files: tuple[ArtifactFile, ...]
    source: ExportSource
    verification: tuple[Check, ...]
    tools: dict[str, str]
    # GGUF: every quantization written, the full-precision file they were made from, Ollama's chat.
    quants: tuple[str, ...] = ()
    base: str | None = None
    ollama: OllamaChat | None = None
    # ONNX: the task head, the opset, and which int8 recipe passed (backends/onnx_int8.py).
    task: str | None = None
    opset: int | None = None
    int8_recipe: str | None = None

    def file_of(self, quant: str) -> str:
        """The GGUF file of ``quant``."""
        return next(f.path for f in self.files if f.quant == quant)

    def check(self, name: str) -> Check | None:
        return next((c for c in self.verification if c.name == name), None)
