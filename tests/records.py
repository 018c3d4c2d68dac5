"""Typed records for tests that feed a reader without running the stage that writes them: only
the fields a test cares about are given, the rest take plain values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from distill.compiler.records.data_card import CardInputs, DataCard, Generation, Rejected, SplitCounts
from distill.compiler.records.evaluation import Decoding, Evaluation, ModelResult, Sample
from distill.compiler.records.lock import Lock
from distill.compiler.records.manifest import ExportSource, Manifest
from distill.compiler.records.report import Report

DECODING = Decoding(greedy=True, max_new_tokens=64, threads=2, prompt="chat template", hf="placement",
                    latency_new_tokens=32, latency_runs=3)


def model(name: str, metrics: Mapping[str, float] | None = None, *, size_bytes: int | None = None,
          kind: str = "hf", params: int | None = None, precision: str = "fp32", path: str = "m") -> ModelResult:
    return ModelResult(name=name, kind=kind, path=path, params=params, size_bytes=size_bytes, precision=precision,
                       device="cpu", metrics=dict(metrics or {}))


def evaluation(models: Sequence[ModelResult], retention: Mapping[str, Mapping[str, float]] | None = None, *,
               notes: Sequence[str] = (), samples: Sequence[Sample] = (), examples: int = 5,
               task: str = "causal-lm") -> Evaluation:
    return Evaluation(split="test", examples=examples, task=task, decoding=DECODING, models=tuple(models),
                      retention={k: dict(v) for k, v in (retention or {}).items()}, samples=tuple(samples),
                      notes=tuple(notes))


def manifest(kind: str = "gguf", **fields: Any) -> Manifest:
    """An export's manifest with no files and no checks unless ``fields`` give them."""
    empty: dict[str, Any] = {"model": f"model.{kind}", "quant": "F16" if kind == "gguf" else "none", "files": (),
                             "source": ExportSource("/m", "0" * 64), "verification": (), "tools": {}}
    return Manifest(kind=kind, **{**empty, **fields})


def data_card(examples: Mapping[str, int], rejected: Rejected | None = None, *, chunks: int = 1,
              generation: Generation | None = None) -> DataCard:
    """A data card of teacher examples, ``examples`` per split, and nothing rejected unless said."""
    return DataCard(inputs=CardInputs(chunks, 0), examples=dict(examples),
                    origins={name: {"teacher": count} for name, count in examples.items()},
                    chunks_with_examples=chunks, generation=generation or Generation(),
                    rejected=rejected or Rejected(0, {}, ()), split=SplitCounts({}, dict(examples), ()),
                    lengths_words={})


def lock(**fields: Any) -> Lock:
    """A lock of nothing (no sources, models, settings or tools) but ``fields``."""
    return Lock(**{"spec_sha256": "0" * 64, "sources": (), "models": {}, "settings": {}, "tools": {}, **fields})


def report(**fields: Any) -> Report:
    """A report of a build named "p" with nothing in it but ``fields``."""
    empty: dict[str, Any] = {"name": "p", "spec_sha256": "0" * 64, "spec": {}, "lock": lock(), "plan": {},
                             "data_card": None, "training": None, "evaluation": None, "gates": (),
                             "artifacts": (), "stages": (), "device_peaks": {}, "timings": {}}
    return Report(**{**empty, **fields})
