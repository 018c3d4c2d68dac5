"""Support, checked before anything runs: every part that can refuse a model declares what it
takes, and ``distill plan`` (and the plan ``distill build`` makes first) asks each of them about
the resolved models, so nothing unsupported is found after hours of training.

The declarations live with the parts: the planner's shape models (``compiler/arch.py``), the GGUF
backend's families and tokenizers (``backends/gguf_archs.py``, ``backends/gguf_vocab.py``), the
ONNX backend's model types (``backends/onnx_support.py``). Those modules import no torch, so this
check costs milliseconds. Each backend asks the same function again when it exports.

``python -m distill.compiler.support`` prints the README's support matrix from the same
declarations (a test keeps the README in step).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import get_args

from distill.backends import gguf_archs, gguf_vocab, llama_cpp, onnx_support
from distill.compiler.arch import UnsupportedArchitecture, architecture
from distill.compiler.checks import Finding
from distill.compiler.errors import DistillError
from distill.compiler.records.record import read_json
from distill.compiler.resolve import ResolvedModel
from distill.compiler.spec import DeployTarget, GgufQuant, Spec


def support_findings(spec: Spec, models: dict[str, ResolvedModel]) -> list[Finding]:
    """Every refusal of the resolved models, located where the Distillfile names the model or
    the deploy target."""
    findings = [finding for role, model in models.items() for finding in _planner(role, model)]
    student = models.get("student")
    if student is not None:
        for i, target in enumerate(spec.deploy):
            findings += _deploy(i, target, student, spec.student.task)
    return findings


def _planner(role: str, model: ResolvedModel) -> Iterator[Finding]:
    try:
        architecture(model.config)
    except UnsupportedArchitecture as error:
        yield Finding((role, "model"), f"{role}.model {model.ref!r}: {error.message}", error.hint,
                      fallback=(role, "random", "config"))


def _deploy(i: int, target: DeployTarget, student: ResolvedModel, task: str) -> list[Finding]:
    if target.gguf is not None:
        reasons = [gguf_archs.refusal(student.config), _gguf_tokenizer(student),
                   llama_cpp.converter_missing()]
        alternative = (onnx_support.refusal(student.config, "none", _onnx_task(task)) is None
                       and "deploy this student to onnx instead")
    else:
        assert target.onnx is not None
        reasons = [onnx_support.refusal(student.config, target.onnx.quant, _onnx_task(task))]
        alternative = (task == "causal-lm" and gguf_archs.refusal(student.config) is None
                       and "deploy this student to gguf instead")
    return [Finding(("deploy", i, target.kind),
                    f"{target.kind} cannot take student {student.ref!r}: {reason}",
                    alternative or f"pick a student the {target.kind} backend takes (README: support matrix)")
            for reason in reasons if reason is not None]


def _gguf_tokenizer(student: ResolvedModel) -> str | None:
    """llama.cpp must tokenize as the student does; only a tokenizer.json can be checked now
    (a model without one fails the export's tokenizer checks instead)."""
    if student.tokenizer_file is None:
        return None
    try:
        tokenizer = read_json(student.tokenizer_file)
    except DistillError as error:
        return f"its tokenizer.json cannot be read: {error.message}"
    return gguf_vocab.tokenizer_refusal(tokenizer)


def _onnx_task(task: str) -> str:
    """The optimum task of a student's spec task."""
    return onnx_support.QA if task == "extractive-qa" else onnx_support.CAUSAL


def support_matrix() -> str:
    """The README's table: each family the planner models, and what training, GGUF and ONNX take
    of it, from the declarations above."""
    from distill.compiler.arch import DECODERS, ENCODERS

    gguf = {found.model_type: found for found in gguf_archs.FAMILIES.values()}
    rows = [f"GGUF targets take every quant ({', '.join(get_args(GgufQuant))}); ONNX targets fp32 "
            f"(`quant: none`) and int8, rope scaling {', '.join(onnx_support.ROPE_TYPES)}.", "",
            "| model_type | plan and train | GGUF (llama.cpp architecture) | ONNX |",
            "| --- | --- | --- | --- |"]
    for family in (*DECODERS, *ENCODERS):
        encoder = family in ENCODERS
        task = _onnx_task("extractive-qa" if encoder else "causal-lm")
        train = "extractive QA: full, LoRA" if encoder else "causal LM: full, LoRA, QLoRA"
        found = None if encoder else gguf.get(family)
        rope = f", rope scaling {', '.join(found.rope_types)}" if found and found.rope_types else ""
        gguf_cell = f"yes ({found.gguf}{rope})" if found else "no"
        onnx_cell = "yes" if family in onnx_support.MODEL_TYPES[task] else "no"
        rows.append(f"| {family} | {train} | {gguf_cell} | {onnx_cell} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(support_matrix() + "\n")
