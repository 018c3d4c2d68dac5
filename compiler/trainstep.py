"""What one training step looks like, for memory prediction (compiler) and measurement (runtime).

The planner predicts the peak live bytes of the step a ``TrainStep`` describes;
``distill.runtime.train.memtrace`` runs that same step on real tensors and measures it. Keeping one
description for both is what lets ``benchmarks/planner_accuracy.py`` compare them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ComputeDtype = Literal["float32", "bfloat16", "float16"]
KdMode = Literal["none", "online", "cached", "sequence"]
Precision = Literal["fp32", "bf16", "fp16"]
Quant = Literal["none", "8bit", "4bit"]
Optimizer = Literal["adamw", "adamw_8bit", "paged_adamw_8bit"]


# Rows per chunk of a causal LM's loss unless the plan says otherwise: its float32 temporaries
# are ~12-40 B x rows x vocab (CE alone .. online KD), so 1,024 rows of a 128k vocabulary hold
# 1.5-5 GiB at once.
DEFAULT_LOSS_CHUNK = 1024


@dataclass(frozen=True)
class TrainStep:
    """One optimizer micro-step of the student, and the teacher beside it when KD is online.

    Attributes:
        micro_batch: sequences per forward pass.
        seq_len: tokens per sequence (every sequence padded or packed to this length).
        accumulation: micro-steps per optimizer step; from the second on, the gradients of the
            earlier ones stay alive through forward and backward.
        dtype: dtype of the student's weights and activations.
        precision: the autocast the loop computes the loss under ("fp32": none; "bf16", "fp16").
        adapter: "none" trains every weight; "lora" adds adapters to ``lora_targets``; "qlora"
            is lora on an nf4 base (``base_quant`` "4bit").
        lora_r: adapter rank.
        lora_dropout: dropout on each adapter's input (peft's lora_dropout).
        lora_targets: names of the adapted linear layers (see ``Architecture.linear_names``).
        base_quant: bitsandbytes quantization of the frozen base: "none", "8bit" or "4bit" (nf4
            with double quantization).
        checkpointing: recompute each layer's activations in backward (non-reentrant).
        attention: "sdpa" (fused, no s x s score tensor kept) or "eager".
        optimizer: AdamW with states in the trained weights' dtype, or bitsandbytes 8-bit (paged)
            states.
        kd: "none"; "online": the teacher runs in the same step; "cached": top-k teacher logits
            are read from disk; "sequence": train on teacher-generated text only (no logits).
        loss_chunk_tokens: rows per chunk of a causal LM's loss (CE and KD,
            ``runtime/train/losses.token_losses``): the logits of one chunk exist at a time.
        top_k: teacher logits kept per token when ``kd`` is "cached".
        teacher_dtype, teacher_quant: how the resident teacher is held when ``kd`` is "online".
        processes: data-parallel ranks (gpus x nodes); ``micro_batch`` is per rank.
        strategy: with ``processes`` > 1, "ddp" (a replica per rank, gradients copied into
            DDP's buckets) or "fsdp" (FULL_SHARD, one unit per decoder layer; see
            ``distill.compiler.distributed``).
    """

    micro_batch: int
    seq_len: int
    dtype: ComputeDtype = "float32"
    precision: Precision = "fp32"
    accumulation: int = 1
    adapter: Literal["none", "lora", "qlora"] = "none"
    lora_r: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ()
    base_quant: Quant = "none"
    checkpointing: bool = False
    attention: Literal["sdpa", "eager"] = "sdpa"
    optimizer: Optimizer = "adamw"
    kd: KdMode = "none"
    loss_chunk_tokens: int = DEFAULT_LOSS_CHUNK
    top_k: int = 64
    teacher_dtype: ComputeDtype = "float32"
    teacher_quant: Quant = "none"
    processes: int = 1
    strategy: Literal["ddp", "fsdp"] = "ddp"

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq_len
