"""The student as the plan says to train it: base (random, local or hub; quantized for QLoRA or a
quantized base), adapter (LoRA with the seed set right before its initialisation) or full
fine-tuning, gradient checkpointing; and the "head" the chunked loss applies to hidden rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from distill.compiler.plan import Plan
from distill.compiler.resolve import ResolvedModel
from distill.compiler.spec import Spec

if TYPE_CHECKING:
    from transformers import PreTrainedModel

Head = Callable[[torch.Tensor], torch.Tensor]


def student_quant(spec: Spec, plan: Plan) -> str:
    """bitsandbytes quantization of the frozen base: QLoRA means nf4."""
    return "4bit" if spec.student.adapter.type == "qlora" else plan.student_quant


def build_student(resolved: ResolvedModel, spec: Spec, root: Path, plan: Plan) -> torch.nn.Module:
    """The trainable student in train mode. A random base is initialised from its
    ``random.seed``; ``spec.seed`` seeds the adapter's initialisation, set right before it, so one
    Distillfile gives one starting point whatever ran before."""
    from distill.runtime.models import load_model
    from distill.runtime.placement import Placement

    quant = student_quant(spec, plan)
    head: Literal["causal-lm", "extractive-qa"] = (
        "extractive-qa" if spec.student.task == "extractive-qa" else "causal-lm")
    model = load_model(resolved, spec.student, root, Placement.of(plan), quant, "student", head=head)
    adapter = spec.student.adapter
    lora = (Lora(adapter.r, adapter.alpha, adapter.dropout, tuple(plan.lora_targets))
            if adapter.type != "none" else None)
    return make_trainable(model, quant, lora, plan.checkpointing, head, spec.seed)


@dataclass(frozen=True)
class Lora:
    """The adapter the plan trains: rank, alpha, dropout and the modules it wraps."""

    r: int
    alpha: float
    dropout: float
    targets: tuple[str, ...]


def make_trainable(model: PreTrainedModel, quant: str, lora: Lora | None, checkpointing: bool, head: str,
                   seed: int) -> torch.nn.Module:
    """The loaded base made trainable as planned, in train mode: k-bit preparation of a quantized
    base, the adapter (``seed`` set right before its initialisation), non-reentrant gradient
    checkpointing. The build and ``runtime/train/memtrace.py`` both call this: one student, two uses."""
    import peft

    no_reentrant = {"use_reentrant": False}
    if quant != "none":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                                     gradient_checkpointing_kwargs=no_reentrant)
        _one_kbit_kernel(model)
    trainable: PreTrainedModel | peft.PeftModel | peft.PeftMixedModel = model
    if lora is not None:
        torch.manual_seed(seed)
        config = peft.LoraConfig(r=lora.r, lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft: int; a float works
                                 lora_dropout=lora.dropout, target_modules=list(lora.targets),
                                 task_type="QUESTION_ANS" if head == "extractive-qa" else "CAUSAL_LM")
        trainable = peft.get_peft_model(model, config)
    if checkpointing:
        trainable.gradient_checkpointing_enable(gradient_checkpointing_kwargs=no_reentrant)
    return trainable.train()


def _one_kbit_kernel(model: torch.nn.Module) -> None:
    """Keeps a 4-bit student on one kernel for training, validation and merging. Why: on a CPU
    with AVX512-BF16, bitsandbytes repacks a Linear4bit's weight the first time it runs in eval
    mode under no_grad (the head probe, a validation pass) for a forward-only bf16 kernel, and
    keeps that layout: later training forwards then run a kernel whose outputs differ by ~1%, and
    the repack asserts on widths not divisible by 32."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


@dataclass(frozen=True)
class HeadedOutput:
    """What the loss needs from a causal LM forward: the rows fed to ``head`` (final hidden
    states, or the logits themselves when ``head`` is the identity) and all hidden states."""

    rows: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None


def causal_head(model: Any) -> Head | None:
    """The model's output head (lm_head plus a final logit soft-cap), applied to rows of final
    hidden states, when it reproduces the model's own logits; ``None`` otherwise.

    Why: the chunked loss computes logits chunk by chunk from hidden rows, so a batch's
    (tokens x vocab) logits never exist at once. That needs ``hidden_states[-1]`` to be the
    normalized state the head reads (true for llama, mistral, qwen2, qwen3, phi3, gemma, gemma2,
    gemma3_text, gpt2 in transformers 4.57), and a teacher's rows come from its ``backbone``
    (``final_rows``); a probe checks both on this very model, and where either fails the caller
    falls back to full logits.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    cap = getattr(base.config, "final_logit_softcapping", None)

    def apply(rows: torch.Tensor) -> torch.Tensor:
        logits = head(rows)
        return torch.tanh(logits / cap) * cap if cap else logits

    was_training = model.training
    model.eval()
    probe = torch.arange(min(8, base.config.vocab_size), device=head.weight.device).unsqueeze(0)
    with torch.no_grad():
        out = model(input_ids=probe, output_hidden_states=True)
        # Both row sources the loss uses: the student's hidden_states[-1] and a teacher's backbone.
        same = backbone(model) is not None and all(
            torch.allclose(apply(rows).float(), out.logits.float(), atol=1e-4, rtol=1e-4)
            for rows in (out.hidden_states[-1], final_rows(model, {"input_ids": probe, "attention_mask": None}).rows))
    model.train(was_training)
    return apply if same else None


def causal_forward(model: Any, batch: dict[str, torch.Tensor], head: Head | None, hidden: bool) -> HeadedOutput:
    """Forward without materializing full logits when the head is known (``logits_to_keep=1``
    keeps one position's logits, which HF computes anyway)."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if head is None:
        out = model(**inputs, output_hidden_states=hidden)
        return HeadedOutput(out.logits, out.hidden_states if hidden else None)
    out = model(**inputs, output_hidden_states=True, logits_to_keep=1)
    return HeadedOutput(out.hidden_states[-1], out.hidden_states)


def final_rows(model: Any, batch: Mapping[str, torch.Tensor | None]) -> HeadedOutput:
    """A frozen model's final (normalized) hidden states from its backbone alone: no logits, and
    not every layer's output held until the forward ends (``output_hidden_states`` would keep
    layers + 1 copies of tokens x hidden). For a teacher whose ``causal_head`` probe passed, these
    are the rows its head reads (HF's ``last_hidden_state`` is ``hidden_states[-1]``)."""
    stack = backbone(model)
    if stack is None:
        raise ValueError(f"{type(model).__name__}: no backbone under its head (causal_head returns None for it)")
    out = stack(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return HeadedOutput(out.last_hidden_state, None)


def backbone(model: Any) -> torch.nn.Module | None:
    """The decoder stack under a causal LM's head, or None when there is none to find. Usually
    the attribute ``base_model_prefix`` names (llama's ``model``, gpt2's ``transformer``); Gemma
    3's text-only ``Gemma3ForCausalLM`` declares "language_model" (the prefix of the multimodal
    checkpoints it also loads) but holds its stack as ``model``, which transformers'
    ``get_decoder`` returns."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    prefix = getattr(base, "base_model_prefix", "")
    found = getattr(base, prefix, None) if prefix else None
    if isinstance(found, torch.nn.Module) and found is not base:
        return found
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    return decoder if isinstance(decoder, torch.nn.Module) and decoder is not base else None
