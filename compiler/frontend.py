"""The compiler front end: a Distillfile path in, a validated ``Spec`` (or every error) out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distill.compiler.checks import Finding, check_meaning
from distill.compiler.codec import build_spec, spec_hash
from distill.compiler.document import DataPath, Document, parse_document, read_text
from distill.compiler.errors import Diagnostic, SpecError, UsageError
from distill.compiler.schema import check_shape
from distill.compiler.spec import Spec

DEFAULT_NAME = "Distillfile"


@dataclass(frozen=True)
class CompiledSpec:
    """A valid Spec with where it came from: the file, its folder (paths in the Spec are relative
    to it), the warnings found on the way, and the parsed document (to locate later findings)."""

    path: Path
    spec: Spec
    warnings: tuple[Diagnostic, ...]
    document: Document

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def hash(self) -> str:
        return spec_hash(self.spec)


def find_distillfile(given: Path) -> Path:
    """The Distillfile a command means: the path itself, or ``Distillfile`` inside a folder."""
    if given.is_dir():
        inner = given / DEFAULT_NAME
        if not inner.is_file():
            raise UsageError(f"{given} is a directory without a {DEFAULT_NAME} in it",
                             hint="pass the Distillfile's path, or run `distill init` there")
        return inner
    return given


def compile_file(given: Path) -> CompiledSpec:
    """Read, parse, shape-check and meaning-check a Distillfile. Raises ``SpecError`` carrying
    every error in file order, or ``UsageError`` for a path that is not a file."""
    path = find_distillfile(given)
    display = str(path)
    doc = parse_document(read_text(path, display), display)
    return compile_document(doc, path)


def compile_document(doc: Document, path: Path) -> CompiledSpec:
    """Shape- and meaning-check parsed YAML; ``path`` anchors the relative paths inside it."""
    shape_errors = check_shape(doc)
    if shape_errors:
        raise SpecError(shape_errors)
    spec = build_spec(doc.data)
    found = diagnostics(doc, check_meaning(spec, path.parent))
    if any(d.severity == "error" for d in found):
        raise SpecError(found)
    return CompiledSpec(path, spec, tuple(found), doc)


def diagnostics(doc: Document, findings: list[Finding]) -> list[Diagnostic]:
    """Findings located in the Distillfile."""
    return [Diagnostic(doc.locate(_where(doc, f)), f.message, f.hint, f.severity) for f in findings]


def _where(doc: Document, finding: Finding) -> DataPath:
    if finding.fallback is not None and not doc.is_written(finding.path):
        return finding.fallback
    return finding.path
