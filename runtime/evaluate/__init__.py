"""The evaluate stage: teacher, student and every exported artifact on the test split with the same
decoding (``stage.evaluate`` -> ``evaluation.json``), then the quality gates (``gates``)."""

from distill.runtime.evaluate.gates import GateFailed, check_gates, enforce_gates
from distill.runtime.evaluate.stage import Candidate, evaluate

__all__ = ["Candidate", "GateFailed", "check_gates", "enforce_gates", "evaluate"]
