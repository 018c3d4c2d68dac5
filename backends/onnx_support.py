"""What the ONNX backend takes, as data, and the one check both ``distill plan`` and the export
run on a raw ``config.json`` dict: :func:`refusal`.

Stdlib only, so the compiler can refuse an unsupported student at plan time, before training,
without importing torch or optimum. Every model type and rope type listed here is exported and
verified (fp32 and int8) by ``tests/backends/test_onnx_families.py``; a test fails when this
module claims one that no export test covers.

``quant: int8`` is not one recipe: :data:`INT8_RECIPES` lists, cheapest first, the ways the
backend makes the int8 graph; it keeps the first that passes verification. onnxruntime's dynamic
quantization breaks SmolLM2-135M-Instruct (logits off by 0.74 of their scale, top-1 0.27): the
inputs of its MLP down projections carry activation outliers (max |x| 3079 in layer 11 where
99.9% stay under 2.5), so one per-tensor activation scale rounds everything else to zero. int8
weights in blocks of 32 with fp32 activations hold there (0.037, top-1 0.97), 2.3x smaller
instead of 3.9x (the embedding stays fp32). ``benchmarks/onnx_int8.py`` measures every candidate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from distill.compiler.arch import rope_type

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

# The spec's OnnxTarget.quant values: "none" is the fp32 graph, "int8" int8 weights made by the
# first of INT8_RECIPES that passes verification.
QUANTS = ("none", "int8")


@dataclass(frozen=True)
class Int8Recipe:
    """One way to make the int8 graph from the fp32 export.

    Attributes:
        name: recorded in the manifest (``int8_recipe``) and the verification report.
        kind: ``"dynamic"``: onnxruntime's ``quantize_dynamic`` (int8 weights, one scale per
            tensor; activations quantized per tensor at run time, int8 matmuls); ``"weight_only"``:
            every MatMul with a constant weight becomes ``MatMulNBits`` with 8-bit weights, one
            scale per ``block_size`` weights along the input dimension, computing in fp32.
        summary: what it does, in words, for the verification report.
        block_size: weights per scale (``weight_only``); a power of two >= 16 (MatMulNBits).
    """

    name: str
    kind: Literal["dynamic", "weight_only"]
    summary: str
    block_size: int = 0


# Tried in this order; the first whose verification passes is kept. Measured on
# SmolLM2-135M-Instruct by benchmarks/onnx_int8.py (2 CPU threads; fp32 graph 539 MB, logit scale
# 36.4, so the bound is 3.6 logits; max |diff| / scale and top-1 on the probe, then on a held-out
# seed; seconds to quantize + to verify):
#   dynamic                   0.74, 0.27 | 0.51, 0.27   137 MB (3.9x)   11 s + 9 s    fails
#   weight-only, blocks of 32 0.037, 0.97 | 0.053, 0.98 234 MB (2.3x)   4 s + 14 s    holds
# Dynamic stays first: 4x smaller, int8 matmuls, and it holds where activations have no outliers
# (the tiny test models: llama 0.015, BERT QA 0.004). The real all-MiniLM-L6-v2 encoder with a
# fresh QA head, exported by the backend, fails it too (start logits 0.146, bound 0.10) and holds
# with blocks of 32 (0.0088; 90 -> 60 MB, its embedding is half the model). Blocks of 32: 16 gains nothing (0.035 |
# 0.051, 247 MB), 64 and 128 leave less margin on the held-out seed (0.072, 0.093). Measured and
# failing: dynamic with per-channel weights (1.36, top-1 0), + reduce_range (0.55), MatMul only
# = embedding and tied head in fp32 (0.62), down_proj in fp32 (0.26, top-1 0.59); static QDQ
# calibrated on 4 seeded batches (1.18, top-1 0.02, 228 s to quantize); and the 32-blocks at
# onnxruntime's int8-compute level (accuracy_level 4, what its fusion of DequantizeLinear ->
# MatMul picks), which quantizes activations in blocks of 32 too: 0.088, top-1 0.84.
INT8_RECIPES: tuple[Int8Recipe, ...] = (
    Int8Recipe("dynamic", "dynamic",
               "onnxruntime dynamic quantization: int8 weights per tensor, activations per tensor at run time"),
    Int8Recipe("weight-only-block32", "weight_only",
               "int8 weights, one scale per 32 along the input dimension (MatMulNBits), activations "
               "and compute in fp32; the embedding stays fp32", block_size=32),
)


def task_of(config: Mapping[str, Any]) -> str:
    """The optimum task for a model config: extractive QA when an architecture has a QA head,
    else a causal LM with past key values."""
    if any(name.endswith("ForQuestionAnswering") for name in config.get("architectures") or ()):
        return QA
    return CAUSAL


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

