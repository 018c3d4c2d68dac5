"""``report.json``, beside the model card in ``dist/<name>/``: every fact the card states, as data.
Written by the report stage; read by ``distill build`` (gates and the summary it prints) and
``distill plan`` (how the last build's plan held on a GPU)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from distill.compiler.records.data_card import DataCard
from distill.compiler.records.evaluation import Evaluation
from distill.compiler.records.lock import Lock
from distill.compiler.records.manifest import Manifest
from distill.compiler.records.record import Record

REPORT = "report.json"


@dataclass(frozen=True)
class ReportArtifact:
    """One export: its kind, its folder relative to ``dist/<name>/``, its manifest."""

    kind: str
    path: str
    manifest: Manifest


@dataclass(frozen=True)
class GateResult:
    """One gate checked on one model; ``value`` is None when the metric was not measured."""

    gate: str
    model: str
    value: float | None
    threshold: float
    passed: bool
    message: str


@dataclass(frozen=True)
class PlannedPeak:
    """The plan's largest memory phase for a stage, bytes (CUDA context included on a GPU)."""

    phase: str
    bytes: int


@dataclass(frozen=True)
class StageRow:
    """A stage of the build: its cache key and the plan's peak for it."""

    stage: str
    key: str
    predicted_peak: PlannedPeak | None = None


@dataclass(frozen=True)
class HeldPeak:
    """The CUDA caching allocator's peaks of a stage that ran on a GPU, bytes, beside the plan's:
    reserved over predicted says how well the plan held."""

    allocated: int
    reserved: int
    predicted: int | None = None
    reserved_over_predicted: float | None = None


@dataclass(frozen=True)
class Report(Record):
    """``spec`` and ``plan`` are the build's Distillfile (defaults written out, as
    docs/distillfile.md describes it) and plan as data; ``data_card`` the synthesize stage's data
    card; ``training`` the loss summary. Wall-clock seconds differ
    between runs and are kept apart, last, under ``timings``."""

    KIND: ClassVar[str] = "report"
    VERSION: ClassVar[int] = 1

    # In name order, as a reader scans the file; the measured run facts last.
    artifacts: tuple[ReportArtifact, ...]
    data_card: DataCard | None
    evaluation: Evaluation | None
    gates: tuple[GateResult, ...]
    lock: Lock
    name: str
    plan: dict[str, Any]
    spec: dict[str, Any]
    spec_sha256: str
    stages: tuple[StageRow, ...]
    training: dict[str, Any] | None
    device_peaks: dict[str, HeldPeak]
    timings: dict[str, float]
