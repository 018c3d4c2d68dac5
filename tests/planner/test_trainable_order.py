"""The tensors the planner assumes are the ones transformers and peft register: same order, sizes
and dtypes, for the optimizer (``trainable_shapes``) and for FSDP's flat parameters (``units``).

Order matters: CPU AdamW's temporaries peak at a pair of neighbouring tensors, and which elements
fall in each FSDP rank's shard depends on where each tensor starts in its unit.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import peft
import pytest
import torch
import transformers

from distill.compiler.arch import architecture
from distill.compiler.distributed import units
from distill.compiler.memory import trainable_shapes
from distill.compiler.trainstep import TrainStep
from tests.planner.test_arch import AUTO, HEADS, TINY

R = 4
# Full fine-tuning with every head transformers has; LoRA on the heads the planner trains
# (causal-lm and extractive-qa students: peft's "dense" would also adapt BERT's MLM head and pooler).
TRAINED = [(family, head) for family, head in HEADS if head in ("causal-lm", "extractive-qa")]
CASES = [(family, head, "none") for family, head in HEADS] + \
    [(family, head, adapter) for family, head in TRAINED for adapter in ("lora all", "lora first")]
LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h)\.(\d+)\.")  # decoder, encoder and GPT-2 layer lists


def _targets(family: str, adapter: str) -> tuple[str, ...]:
    names = architecture(TINY[family]).linear_names
    return {"none": (), "lora all": names, "lora first": names[:1]}[adapter]


def _step(targets: tuple[str, ...]) -> TrainStep:
    return TrainStep(micro_batch=1, seq_len=8, dtype="bfloat16", adapter="lora" if targets else "none",
                     lora_r=R, lora_targets=targets)


def _built(family: str, head: str, targets: tuple[str, ...]) -> list[tuple[str, torch.nn.Parameter]]:
    """named_parameters() of the bf16 student as ``runtime/train/student.make_trainable`` makes it."""
    config = transformers.AutoConfig.for_model(**TINY[family])
    with torch.device("meta"):
        model = AUTO[head].from_config(config, dtype=torch.bfloat16)
        if targets:
            task = "QUESTION_ANS" if head == "extractive-qa" else "CAUSAL_LM"
            model = peft.get_peft_model(model, peft.LoraConfig(r=R, target_modules=list(targets), task_type=task))
    return list(model.named_parameters())


def test_the_cases_cover_every_family_and_both_trained_heads() -> None:
    assert {family for family, _ in TRAINED} == set(TINY) >= {"qwen3", "gemma3_text", "phi3"}
    assert {head for _, head in TRAINED} == {"causal-lm", "extractive-qa"}


@pytest.mark.parametrize(("family", "head", "adapter"), CASES)
def test_trainable_shapes_are_named_parameters_in_order(family: str, head: str, adapter: str) -> None:
    targets = _targets(family, adapter)
    expected = [p.numel() for _, p in _built(family, head, targets) if p.requires_grad]
    assert trainable_shapes(architecture(TINY[family]), _step(targets), head) == expected


@pytest.mark.parametrize(("family", "head", "adapter"), CASES)
def test_fsdp_units_are_the_flat_parameters_in_order(family: str, head: str, adapter: str) -> None:
    """Transformer auto-wrap: each layer is a unit, the root holds every other parameter."""
    targets = _targets(family, adapter)
    params = _built(family, head, targets)

    def tensors(keep: Callable[[re.Match[str] | None], bool]) -> tuple[tuple[int, bool, int], ...]:
        return tuple((p.numel(), p.requires_grad, p.element_size()) for name, p in params if keep(LAYER.search(name)))

    root, layer = units(architecture(TINY[family]), _step(targets), head)
    assert layer.tensors == tensors(lambda m: m is not None and m.group(1) == "0")
    assert root.tensors == tensors(lambda m: m is None)
