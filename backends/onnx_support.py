"""What the ONNX backend takes, as data, and the one check both ``distill plan`` and the export
run on a raw ``config.json`` dict: :func:`refusal`.

Stdlib only, so the compiler can refuse an unsupported student at plan time, before training,
without importing torch or optimum. Every model type and rope type listed here is exported and
verified (fp32 and int8) by ``tests/backends/test_onnx_families.py``; a test fails when this
module claims one that no export test covers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CAUSAL = "text-generation-with-past"
QA = "question-answering"

# optimum-onnx 0.1.0 has an OnnxConfig for each. onnx.py works around what it gets wrong for
# some: sdpa tracing drops Gemma-2's soft-capping, and its onnxruntime wrapper sizes the first
# cache wrongly for phi3/gemma2 (kv heads) and for any head_dim != hidden / heads (Qwen3).
MODEL_TYPES: Mapping[str, tuple[str, ...]] = {
    CAUSAL: ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "gpt2"),
    QA: ("bert", "roberta", "distilbert"),
}

# Frequencies fixed by the config trace into the graph as constants. LongRoPE switches from its
# short to its long factors past original_max_position_embeddings; the backend puts that switch
# into the graph (a traced Python `if` would freeze the branch of the export's 16-token dummy).
ROPE_TYPES = ("default", "linear", "llama3", "yarn", "longrope")
REFUSED_ROPE = {
    "dynamic": "recomputes its frequencies from the sequence length at run time, a branch an ONNX "
               "trace freezes at the export's dummy length",
}

# The spec's OnnxTarget.quant values: "none" is the fp32 graph, "int8" onnxruntime's dynamic
# quantization (int8 weights, activations quantized at run time).
QUANTS = ("none", "int8")


def task_of(config: Mapping[str, Any]) -> str:
    """The optimum task for a model config: extractive QA when an architecture has a QA head,
    else a causal LM with past key values."""
    if any(name.endswith("ForQuestionAnswering") for name in config.get("architectures") or ()):
        return QA
    return CAUSAL


def rope_type(config: Mapping[str, Any]) -> str:
    """The config's rope scaling type (``rope_type``, or the older ``type`` key; Phi-3 configs
    ship ``"su"``, transformers' old name for longrope), ``"default"`` without scaling."""
    scaling = config.get("rope_scaling") or {}
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    return "longrope" if kind == "su" else str(kind)


def refusal(config: Mapping[str, Any], quant: str, task: str | None = None) -> str | None:
    """Why the ONNX backend cannot export this model at ``quant``, in one line naming the setting
    and what would work instead; None when it can.

    Args:
        config: the student's ``config.json`` as a dict.
        quant: the target's quantization, ``"none"`` (fp32) or ``"int8"``.
        task: :data:`CAUSAL` or :data:`QA`; by default :func:`task_of` the config. Plan time
            passes the student's task: an extractive-qa student's base config still names its
            pretraining head (distilbert-base-uncased: ``DistilBertForMaskedLM``).
    """
    if quant not in QUANTS:
        return f"onnx quant {quant!r} is not supported; use none (fp32) or int8"
    model_type, task = str(config.get("model_type")), task or task_of(config)
    if model_type not in MODEL_TYPES[task]:
        if model_type in MODEL_TYPES[QA]:
            return (f"onnx exports model_type {model_type!r} only with a question-answering head "
                    f"(architectures {config.get('architectures')}); train an extractive-qa student")
        return (f"onnx export of model_type {model_type!r} as {task} is not supported; pick a "
                f"student of {', '.join(MODEL_TYPES[task])}")
    kind = rope_type(config)
    if kind not in ROPE_TYPES:
        why = REFUSED_ROPE.get(kind, "is not one the ONNX export is verified with")
        return (f"onnx: rope_scaling type {kind!r} ({model_type}) {why}; use one of "
                f"{', '.join(ROPE_TYPES)}")
    return None

